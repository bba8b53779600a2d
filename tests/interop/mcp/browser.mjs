// Debian's Chromium (or $CHROMIUM), driven by playwright-core, as every browser test launches it:
// headless, no sandbox (the tests may run as root), and nothing that reaches the network on its own.
import { chromium } from "playwright-core";

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
}
