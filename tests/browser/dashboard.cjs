// Drives habd's dashboard in Debian's chromium (headless) with
// puppeteer-core, and checks every page with axe-core. Run by
// tests/dashboard_browser.rs, which starts habd and its fleet first.
//
// Environment: HAB_URL (habd's base URL), HAB_TOKEN (an API token),
// HAB_FLEET (the fleet to watch), HAB_OUT (where screenshots go),
// HAB_BROWSER_DIR (where puppeteer-core and axe-core are installed).
// Prints one JSON object of findings on stdout; exits non-zero on a failed
// check, saying which.
"use strict";
const path = require("path");
const fs = require("fs");
const dir = process.env.HAB_BROWSER_DIR || "/opt/hab-browser";
const puppeteer = require(path.join(dir, "node_modules/puppeteer-core"));
const AXE = path.join(dir, "node_modules/axe-core/axe.min.js");
const BASE = process.env.HAB_URL;
const TOKEN = process.env.HAB_TOKEN;
const FLEET = process.env.HAB_FLEET;
const OUT = process.env.HAB_OUT;
const found = { pages: {}, axe: {}, screenshots: [] };

function check(ok, what) {
  if (!ok) {
    throw new Error(`check failed: ${what}`);
  }
}

async function axe(page, name) {
  await page.addScriptTag({ path: AXE });
  const r = await page.evaluate(async () => {
    const res = await window.axe.run(document, { resultTypes: ["violations"] });
    return res.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5),
    }));
  });
  found.axe[name] = r;
  const bad = r.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(bad.length === 0, `axe on ${name}: ${JSON.stringify(bad)}`);
}

async function shoot(page, name) {
  for (const width of [375, 1440]) {
    await page.setViewport({ width, height: 900 });
    const file = path.join(OUT, `${name}-${width}.png`);
    await page.screenshot({ path: file, fullPage: true });
    found.screenshots.push(file);
  }
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  try {
    const page = await browser.newPage();
    // axe is injected as a script; the pages' policy allows only their own.
    await page.setBypassCSP(true);
    page.setDefaultTimeout(30000);
    const dialogs = [];
    page.on("dialog", async (d) => {
      dialogs.push(d.message());
      await d.dismiss();
    });

    // Unauthenticated: the sign-in page, whatever was asked for.
    await page.goto(`${BASE}/fleets`);
    check(new URL(page.url()).pathname === "/signin", `unauthenticated /fleets went to ${page.url()}`);
    check((await page.$("input[name=token]")) !== null, "the sign-in page has a token field");
    await axe(page, "signin");
    await shoot(page, "signin");

    // A wrong token: still the sign-in page, with a reason.
    await page.type("#token", "not-the-token");
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    check((await page.content()).includes("not one of habd"), "a wrong token is refused with a reason");
    await axe(page, "signin-refused");

    // Sign in; back to where we were going.
    await page.type("#token", TOKEN);
    await page.type("#name", "Ann Operator");
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    check(new URL(page.url()).pathname === "/fleets", `signed in to ${page.url()}`);
    const cookies = await page.cookies();
    const c = cookies.find((x) => x.name === "hab_session");
    check(c && c.httpOnly && c.sameSite === "Strict", `the session cookie: ${JSON.stringify(c)}`);
    found.cookie = { httpOnly: c.httpOnly, sameSite: c.sameSite, secure: c.secure };

    // The overview shows the fixture fleet's data.
    await page.goto(`${BASE}/`);
    const overview = await page.$eval("main", (m) => m.innerText);
    found.pages.overview = overview;
    check(overview.includes("v1.0.0"), "the overview shows the stable release v1.0.0");
    check(overview.includes(`${FLEET}/0`), `the overview shows node ${FLEET}/0`);
    await axe(page, "overview");
    await shoot(page, "overview");

    // Upstream freshness: the hostile tag message is shown as text.
    await page.goto(`${BASE}/freshness`);
    const fresh = await page.$eval("main", (m) => m.innerText);
    found.pages.freshness = fresh;
    check(await page.evaluate(() => window.__hab_xss === undefined), "no script from a tag message ran");
    check((await page.$$("main pre.message script, main pre.message img")).length === 0, "a tag message made no element");
    const message = await page.$eval("main pre.message", (p) => p.textContent);
    check(message.includes("<script>"), `the tag message is shown as its text: ${message}`);
    await axe(page, "freshness");
    await shoot(page, "freshness");

    // The queue page (webhook deliveries, actions).
    await page.goto(`${BASE}/queue`);
    const queue = await page.$eval("main", (m) => m.innerText);
    check(!(await page.evaluate(() => window.__hab_xss !== undefined)), "no script from a webhook delivery ran");
    found.pages.queue_before = queue;
    await axe(page, "queue");
    await shoot(page, "queue");

    // A forged action (no CSRF token), posted with the session's cookie.
    const forged = await page.evaluate(async (fleet) => {
      const r = await fetch(`/act/${fleet}/pause`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "csrf=forged",
      });
      return r.status;
    }, FLEET);
    found.forged_status = forged;
    check(forged === 403, `a forged action was answered ${forged}`);

    // The action: promote the edge build to stable, confirmed on its page.
    await page.goto(`${BASE}/`);
    const promote = await page.$("a.button[href^='/promote']");
    check(promote !== null, "the overview offers to promote the edge build");
    await Promise.all([page.waitForNavigation(), promote.click()]);
    const question = await page.$eval("main h2", (h) => h.textContent);
    check(question.startsWith("Promote build #"), `the confirmation asks: ${question}`);
    await axe(page, "confirm");
    await shoot(page, "confirm");
    await Promise.all([page.waitForNavigation(), page.click("button.danger")]);
    const done = await page.$eval("main", (m) => m.innerText);
    found.pages.promoted = done;
    check(done.includes("Promoted"), `the promote was done: ${done}`);
    await axe(page, "outcome");

    // The fleets page follows the rollout live: no reload.
    await page.goto(`${BASE}/fleets`);
    await page.evaluate(() => {
      window.__hab_same_page = true;
    });
    const seen = [];
    const deadline = Date.now() + 240000;
    let last = "";
    while (Date.now() < deadline) {
      const text = await page.$eval(`#fleet-${FLEET} p.rollout`, (p) => p.textContent).catch(() => "");
      if (text !== last) {
        seen.push(text);
        last = text;
      }
      if (/succeeded|failed/.test(text) && seen.some((t) => /running/.test(t))) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    found.rollout_seen = seen;
    check(await page.evaluate(() => window.__hab_same_page === true), "the fleets page was not reloaded");
    check(seen.some((t) => /running/.test(t)), `the rollout appeared running: ${JSON.stringify(seen)}`);
    check(/succeeded/.test(last), `the rollout ended succeeded: ${last}`);
    const progress = seen.map((t) => Number((t.match(/(\d+) of \d+ nodes done/) || [])[1])).filter((n) => !Number.isNaN(n));
    check(new Set(progress).size >= 3, `the rollout advanced node by node on the page: ${JSON.stringify(progress)}`);
    found.updated_live = await page.$eval("#live", (l) => l.dataset.updated || "");
    check(found.updated_live !== "", "the live section was replaced by the server's events");
    await axe(page, "fleets");
    await shoot(page, "fleets");

    // The action is recorded with who took it.
    await page.goto(`${BASE}/queue`);
    const actions = await page.$eval("#a + div table", (t) => t.innerText);
    found.pages.actions = actions;
    check(/Ann Operator \(token [0-9a-f]{8}\)\s+promote/.test(actions), `the promote is recorded with who: ${actions}`);

    // The chain of custody of what a node runs: from its image on the
    // fleets page.
    await page.goto(`${BASE}/fleets`);
    // (The live section may be redrawn at any moment: find and follow the
    // link in one step.)
    const followed = await Promise.all([
      page.waitForNavigation(),
      page.evaluate((fleet) => {
        const a = document.querySelector(`#fleet-${fleet} tbody a[href^='/custody']`);
        if (a) a.click();
        return a !== null;
      }, FLEET),
    ]);
    check(followed[1], "a node's image links to its chain of custody");
    check(/^\/builds\/\d+$/.test(new URL(page.url()).pathname), `the node's image led to ${page.url()}`);
    const custody = await page.$eval("main", (m) => m.innerText);
    found.pages.custody = custody;
    for (const part of ["Tag", "Commit", "Build", "Verification", "Channels", "Rollouts"]) {
      check(custody.includes(part), `the chain of custody shows ${part}`);
    }
    check(custody.includes("verified"), "the chain of custody shows the verdict");
    await axe(page, "custody");
    await shoot(page, "custody");

    // A page saying no: an image hab did not build.
    await page.goto(`${BASE}/custody?image=elsewhere/x@sha256:${"0".repeat(64)}`);
    check((await page.$eval("main", (m) => m.innerText)).includes("Not built by hab"), "an image hab did not build is named so");
    await axe(page, "problem");

    // Dark: the same pages, as a browser set to dark shows them.
    await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "dark" }]);
    for (const [name, url] of [["overview-dark", "/"], ["fleets-dark", "/fleets"]]) {
      await page.goto(`${BASE}${url}`);
      await axe(page, name);
      await shoot(page, name);
    }
    await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "light" }]);

    // Signing out ends the session.
    await Promise.all([page.waitForNavigation(), page.click("form.signout button")]);
    await page.goto(`${BASE}/`);
    check(new URL(page.url()).pathname === "/signin", "signed out: back to the sign-in page");
    found.dialogs = dialogs;
  } finally {
    await browser.close();
  }
}

main().then(
  () => {
    process.stdout.write(JSON.stringify(found) + "\n");
  },
  (e) => {
    process.stdout.write(JSON.stringify(found) + "\n");
    process.stderr.write(`${e.stack || e}\n`);
    process.exit(1);
  },
);
