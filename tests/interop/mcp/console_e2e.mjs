// The console in a real browser: Debian's Chromium driven by playwright-core (npm). An approver
// signs in, finds the held call with its signals and redacted arguments, and approves it with a
// comment; the page is captured for the README. With `revoker_key` and `revoke`, the human who granted
// the chain signs in, opens its picture and revokes that branch. Prints what it saw as one JSON line.
//
// node console_e2e.mjs '{"url": "...", "key": "...", "approval_id": "apr_...", "shots": "dir"}'
import { chromium } from "playwright-core";

const spec = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const out = {};
try {
  if (spec.approval_id) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("dialog", (d) => d.accept());
  // Not signed in: the console sends the browser to sign in, and back.
  await page.goto(`${spec.url}/console/approvals`);
  out.login_url = page.url();
  await page.fill("#credential", spec.key);
  await Promise.all([
    page.waitForURL((u) => u.pathname === "/console/approvals", { timeout: 15000 }).catch(async (e) => {
      throw new Error(`after sign-in at ${page.url()}: ${(await page.innerText("body")).slice(0, 500)}: ${e}`);
    }),
    page.click("form.signin button[type=submit]"),
  ]);
  const card = page.locator(`[data-approval-id="${spec.approval_id}"]`);
  await card.waitFor();
  out.card = await card.innerText();
  // The badge is filled by the script without a reload.
  await page.waitForFunction(() => document.getElementById("approval-count")?.dataset.pending !== undefined);
  out.badge = await page.locator("#approval-count").innerText();
  if (spec.shots) await page.screenshot({ path: `${spec.shots}/approvals.png`, fullPage: true });
  await card.locator("form[action$='/approve'] input[name=comment]").fill("checked with the controller");
  await card.locator("form[action$='/approve'] button").click();
  await page.locator("#notice").waitFor();
  out.notice = await page.locator("#notice").innerText();
  if (spec.chain) {
    await page.goto(`${spec.url}/console/chains/${spec.chain}`);
    await page.locator("#chain-picture").waitFor();
    out.hops = await page.locator("#chain-picture g.hop").count();
    if (spec.shots) await page.screenshot({ path: `${spec.shots}/chain.png`, fullPage: true });
  }
  }
  // A responder (the human who granted the chain) revokes a branch from the chain's picture.
  if (spec.revoker_key && spec.revoke) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const responder = await context.newPage();
    responder.on("dialog", (d) => d.accept());
    await responder.goto(`${spec.url}/console/chains/${spec.chain}`);
    await responder.fill("#credential", spec.revoker_key);
    await Promise.all([
      responder.waitForURL((u) => u.pathname === `/console/chains/${spec.chain}`, { timeout: 15000 }),
      responder.click("form.signin button[type=submit]"),
    ]);
    const row = responder.locator(`tr[data-mandate="${spec.revoke}"]`);
    await row.locator("input[name=reason]").fill("incident 4711");
    await row.locator("button").click();
    await responder.locator("#notice").waitFor();
    out.revoke_notice = await responder.locator("#notice").innerText();
    out.revoked_state = await responder.locator(`g.hop[data-mandate="${spec.revoke}"]`).getAttribute("data-state");
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
