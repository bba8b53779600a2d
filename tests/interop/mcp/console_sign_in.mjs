// Signing in to the console through the organisation's IdP, in a real browser (Debian's Chromium
// driven by playwright-core): the sign-in page's button, the IdP's own login and consent pages
// (`oidc_provider.mjs`), back to the console signed in. Then the IdP's answer replayed, refused.
// Prints what it saw as one JSON line.
//
//     node console_sign_in.mjs '{"url": "...", "idp": "<issuer>", "login": "alice@example.org", "shots": "dir"}'
import { launch } from "./browser.mjs";

const spec = JSON.parse(process.argv[2]);
const browser = await launch();
const out = {};
const console_ = new URL(spec.url);
// Through the IdP's pages until the browser is back at the console; each callback URL is recorded.
async function signIn(page) {
  const callbacks = [];
  page.on("request", (r) => { if (r.url().includes("/console/oidc/callback")) callbacks.push(r.url()); });
  await page.goto(`${spec.url}/console/approvals`);
  await page.click("#sign-in-idp");
  await page.waitForURL((u) => u.host !== console_.host, { timeout: 15000 });
  out.idp_url = page.url();
  await page.fill("input[name=login]", spec.login);
  await page.fill("input[name=password]", "any password");
  await page.click("button[type=submit]");
  // The IdP's consent page, unless the browser comes straight back.
  await page.waitForURL((u) => u.host === console_.host || u.pathname.includes("/interaction/"), { timeout: 15000 });
  if (page.url().includes("/interaction/") && new URL(page.url()).host !== console_.host) {
    await page.click("button[type=submit]");
  }
  await page.waitForURL((u) => u.host === console_.host, { timeout: 15000 });
  await page.waitForLoadState();
  return callbacks;
}
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const callbacks = await signIn(page);
  out.landed = new URL(page.url()).pathname;
  out.who = await page.locator("header.top .who").innerText();
  out.queue_heading = await page.locator("h1").innerText();
  out.callback = callbacks[0];
  if (spec.shots) await page.screenshot({ path: `${spec.shots}/signed-in.png` });
  // The same callback again: its `state` was used.
  const replay = await page.goto(callbacks[0]);
  out.replay = { status: replay.status(), alert: await page.locator("[role=alert]").innerText() };
  await context.close();

} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
