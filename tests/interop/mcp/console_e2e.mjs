// The console in a real browser: Debian's Chromium driven by playwright-core (npm). An approver
// signs in, finds the held call with its signals and redacted arguments, and approves it with a
// comment; the page is captured for the README. With `revoker_key` and `revoke`, the human who granted
// the chain signs in, opens its picture and revokes that branch. With `admin_key` and `tool`, an admin
// reviews a changed tool definition and approves it; with `unprivileged_key` and `refused_pages`, a
// human without the role is refused. Prints what it saw as one JSON line.
//
// node console_e2e.mjs '{"url": "...", "key": "...", "approval_id": "apr_...", "shots": "dir"}'
import { launch } from "./browser.mjs";

const spec = JSON.parse(process.argv[2]);
const browser = await launch();
const out = {};
// Opens `url` signed out, signs in on the page the console sends the browser to, and comes back.
async function signIn(page, url, key) {
  await page.goto(url);
  await page.fill("#credential", key);
  const back = new URL(url).pathname;
  await Promise.all([
    page.waitForURL((u) => u.pathname === back, { timeout: 15000 }),
    page.click("form.signin button[type=submit]"),
  ]);
}
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
    await signIn(responder, `${spec.url}/console/chains/${spec.chain}`, spec.revoker_key);
    const row = responder.locator(`tr[data-mandate="${spec.revoke}"]`);
    await row.locator("input[name=reason]").fill("incident 4711");
    await row.locator("button").click();
    await responder.locator("#notice").waitFor();
    out.revoke_notice = await responder.locator("#notice").innerText();
    out.revoked_state = await responder.locator(`g.hop[data-mandate="${spec.revoke}"]`).getAttribute("data-state");
  }
  // An admin finds a changed tool definition in the registry, reads it beside its pin, approves it.
  if (spec.admin_key && spec.tool) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    const admin = await context.newPage();
    admin.on("dialog", (d) => d.accept());
    await signIn(admin, `${spec.url}/console/registry`, spec.admin_key);
    const state = () => admin.locator(`#pins tr[data-tool="${spec.tool}"] td`).nth(1).innerText();
    out.tool_state_before = (await state()).trim();
    await Promise.all([
      admin.waitForURL((u) => u.pathname === `/console/tools/${spec.tool}`),
      admin.locator(`#pins tr[data-tool="${spec.tool}"] a`).click(),
    ]);
    out.pinned = await admin.locator("#pinned").innerText();
    out.changed = await admin.locator("#changed").innerText();
    out.changed_lines = await admin.locator("#changed span.ins").allInnerTexts();
    out.removed_lines = await admin.locator("#pinned span.del").allInnerTexts();
    if (spec.shots) await admin.screenshot({ path: `${spec.shots}/tool-diff.png`, fullPage: true });
    await admin.click("#approve-definition");
    await admin.locator("#notice").waitFor();
    out.tool_notice = await admin.locator("#notice").innerText();
    await admin.goto(`${spec.url}/console/registry`);
    out.tool_state_after = (await state()).trim();
    await context.close();
  }
  // A human without the role: each page refuses with the API's reason code, and the registry's parts
  // that are not theirs say so.
  if (spec.unprivileged_key && spec.refused_pages) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signIn(page, `${spec.url}/console/approvals`, spec.unprivileged_key);
    out.refused = [];
    for (const path of spec.refused_pages) {
      const response = await page.goto(`${spec.url}${path}`);
      out.refused.push({ path, status: response.status(), code: await page.locator("code.reason").first().innerText() });
    }
    await page.goto(`${spec.url}/console/registry`);
    out.registry_refusals = await page.locator(".refused").allInnerTexts();
    out.registry_has_pins = (await page.locator("#pins").count()) > 0;
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
