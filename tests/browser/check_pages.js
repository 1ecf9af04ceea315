// Load pages of the static book in headless Chromium and report what went wrong, as JSON.
//
//   node check_pages.js BASE_URL PAGE [PAGE ...]     (pages relative to BASE_URL)
//
// Used by tests/test_browser.py, which serves _build/html on 127.0.0.1 and asserts on the
// report. Per page, in a fresh browser context (no storage carried over from another page):
//   errors    uncaught JavaScript exceptions (pageerror)
//   console   console messages of type "error"
//   offsite   requests to any host other than the server's (blocked, and reported)
//   failed    requests that failed or answered with status >= 400
//   images    <img> elements that did not load (complete but naturalWidth 0)
//   widgetLabels  the labels of the ipywidgets rendered by the embed manager, if any
//   explorers for each static explorer (.cam-static-explorer): the shown photo, map and
//             caption before and after choosing another photo, and whether "any class" is
//             disabled
// Chromium is @sparticuz/chromium (unpacked offline into a temporary folder), driven by
// puppeteer-core; both are pinned in package.json next to this file.
"use strict";
const { launch } = require("./chromium");


async function checkPage(browser, base, path) {
  const origin = new URL(base).origin;
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const report = { page: path, errors: [], console: [], offsite: [], failed: [], images: [],
                   explorers: [] };
  page.on("pageerror", (e) => report.errors.push(String(e && e.message || e)));
  page.on("console", (m) => {
    if (m.type() === "error") {
      const where = m.location() && m.location().url ? ` (${m.location().url})` : "";
      report.console.push(m.text() + where);
    }
  });
  await page.setRequestInterception(true);
  page.on("request", (req) => {
    const url = req.url();
    if (url.startsWith("data:") || url.startsWith("blob:") || url.startsWith("about:")
        || new URL(url).origin === origin) {
      req.continue();
    } else {
      report.offsite.push(url);
      req.abort("blockedbyclient");
    }
  });
  page.on("requestfailed", (req) => {
    const url = req.url();
    if (!report.offsite.includes(url)) {
      report.failed.push(`${url}: ${req.failure() && req.failure().errorText}`);
    }
  });
  page.on("response", (res) => {
    if (res.status() >= 400) report.failed.push(`${res.url()}: HTTP ${res.status()}`);
  });
  try {
    await page.goto(base + path, { waitUntil: "networkidle0", timeout: 60000 });
    // let deferred scripts (MathJax, widget managers) settle
    await new Promise((r) => setTimeout(r, 500));
    report.images = await page.$$eval("img", (imgs) => imgs
      .filter((i) => !(i.complete && i.naturalWidth > 0) && i.style.display !== "none"
                     && i.getAttribute("src"))
      .map((i) => (i.getAttribute("src") || "").slice(0, 120)));
    report.explorers = await exploreStatic(page);
    report.widgetLabels = await page.$$eval(".widget-label", (els) => els.map((e) => e.textContent));
  } catch (e) {
    report.errors.push(`navigation: ${e.message}`);
  }
  await context.close();
  return report;
}

async function exploreStatic(page) {
  const ids = await page.$$eval(".cam-static-explorer", (els) => els.map((e) => e.id));
  const results = [];
  for (const id of ids) {
    const state = () => page.$eval("#" + id, (root) => {
      const q = (role) => root.querySelector(`[data-role="${role}"]`);
      return { photo: q("photo").value, photoSrc: q("photo-image").src.slice(-200),
               heatSrc: q("heat").src.slice(-200), caption: q("caption").textContent,
               classes: Array.from(q("class").options).map((o) => o.textContent) };
    });
    const before = await state();
    const photos = await page.$$eval(`#${id} [data-role="photo"] option`,
                                     (os) => os.map((o) => o.value));
    const other = photos.find((p) => p !== before.photo);
    await page.select(`#${id} [data-role="photo"]`, other);
    const after = await state();
    const anyClassDisabled = await page.$eval(`#${id} [data-role="any-class"]`,
                                              (e) => e.disabled);
    const heatVisible = await page.$eval(`#${id} [data-role="heat"]`,
                                         (e) => e.complete && e.naturalWidth > 0);
    results.push({ id, photos, before, after, anyClassDisabled, heatVisible });
  }
  return results;
}

(async () => {
  const [base, ...pages] = process.argv.slice(2);
  if (!base || pages.length === 0) {
    console.error("usage: node check_pages.js BASE_URL PAGE [PAGE ...]");
    process.exit(2);
  }
  const browser = await launch();
  const reports = [];
  try {
    for (const path of pages) reports.push(await checkPage(browser, base, path));
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify({ reports }));
})().catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
