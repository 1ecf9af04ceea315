// Run the chapters in JupyterLab as a student does, in headless Chromium, and report as JSON.
//
//   node jupyterlab.js PLAN_JSON
//
// PLAN_JSON: {"base": "http://127.0.0.1:PORT/", "token": "...", "notebooks": [paths under
// the server root], "explore": the notebook whose live explorer is driven (or null),
// "scorecamHead": also time Score-CAM at the last layer (about half a minute),
// "screenshots": a folder for PNGs (or null), "width"/"height": the window (1400 x 900),
// "notebookTimeout": ms for one notebook's Run All (20 minutes: a loaded machine)}.
// Used by tests/browser/test_jupyterlab.py and benchmarks/explorer_latency.py through
// jupyterlab_harness.py, which starts the server. One JupyterLab page, the file browser open;
// per notebook: open it, Run All (the Run menu's command), wait for the kernel, then read every
// code cell's outputs from the notebook model, and shut the kernel down. The report:
//   errors    uncaught JavaScript exceptions (pageerror)
//   console   console messages of type "error"
//   offsite   requests to any host but the server's (blocked, and reported)
//   failed    requests that failed or answered with status >= 400
//   aborted   requests the page itself cancelled (not failures: listed for information)
//   notebooks per notebook: code cells, how many ran, error outputs, stderr text, the hidden
//             check cells (tagged remove-cell or remove-input) and how many of them show
//             collapsed (inputHidden), seconds to run
//   explorer  the live explorer's steps: per control change, the picture's SHA-256 before and
//             after, the captions seen meanwhile (with whether every control was disabled),
//             the change-to-picture latency in ms; the layout of the controls; the picture
//             after the class was typed again (base64 PNG)
"use strict";
const fs = require("fs");
const path = require("path");
const { launch } = require("./chromium");

const MINUTE = 60000;

function watch(page, base, report) {
  const origin = new URL(base).origin;
  page.on("pageerror", (e) => report.errors.push(String(e && e.message || e)));
  page.on("console", (m) => {
    if (m.type() === "error") {
      const where = m.location() && m.location().url ? ` (${m.location().url})` : "";
      report.console.push(m.text() + where);
    }
  });
  page.on("request", (req) => {
    const url = req.url();
    if (/^(data|blob|about):/.test(url) || new URL(url).origin === origin) {
      req.continue();
    } else {
      report.offsite.push(url);
      req.abort("blockedbyclient");
    }
  });
  page.on("requestfailed", (req) => {
    const url = req.url(), why = req.failure() && req.failure().errorText;
    if (report.offsite.includes(url) || /^blob:/.test(url)) return;
    // JupyterLab cancels its own superseded requests (workspace saves, session polls)
    (why === "net::ERR_ABORTED" ? report.aborted : report.failed).push(`${url}: ${why}`);
  });
  page.on("response", (res) => {
    if (res.status() >= 400) report.failed.push(`${res.url()}: HTTP ${res.status()}`);
  });
}

async function openNotebook(page, notebook) {
  await page.evaluate(async (notebook) => {
    const app = window.jupyterapp;
    const panel = await app.commands.execute("docmanager:open",
                                             { path: notebook, factory: "Notebook" });
    await panel.context.ready;
    await panel.sessionContext.ready;
    app.shell.activateById(panel.id);
    window.camPanel = panel;
  }, notebook);
}

async function runAll(page, timeout) {
  const started = Date.now();
  await page.evaluate(() => { window.camRun = window.jupyterapp.commands.execute(
    "notebook:run-all-cells").then((ok) => { window.camRunDone = { ok }; },
                                   (e) => { window.camRunDone = { error: String(e) }; }); });
  await page.waitForFunction(() => {
    const panel = window.camPanel;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    return window.camRunDone && kernel && kernel.status === "idle";
  }, { timeout, polling: 250 });
  const seconds = (Date.now() - started) / 1000;
  const cells = await page.evaluate(() => {
    const panel = window.camPanel, model = panel.content.model, found = [];
    for (let i = 0; i < model.cells.length; i++) {
      const cell = model.cells.get(i);
      const tags = cell.getMetadata("tags") || [];
      const hidden = tags.includes("remove-cell") || tags.includes("remove-input");
      const entry = { index: i, type: cell.type, hidden,
                      collapsed: Boolean(panel.content.widgets[i].inputHidden) };
      if (cell.type === "code") {
        const outputs = cell.outputs.toJSON();
        entry.executed = cell.executionCount !== null;
        entry.errors = outputs.filter((o) => o.output_type === "error")
          .map((o) => `${o.ename}: ${o.evalue}`);
        entry.stderr = outputs.filter((o) => o.output_type === "stream" && o.name === "stderr")
          .map((o) => [].concat(o.text).join("").slice(0, 500));
      }
      found.push(entry);
    }
    return { cells: found, done: window.camRunDone };
  });
  return { seconds, ...cells };
}

async function closeNotebook(page) {
  await page.evaluate(async () => {
    const panel = window.camPanel;
    await panel.sessionContext.shutdown();
    panel.context.model.dirty = false;
    panel.close();
    window.camPanel = window.camRun = window.camRunDone = undefined;
  });
}

async function scrollToCell(page, predicate) {
  // the notebook renders only the cells near the view: bring the cell there first
  return page.evaluate(async (source) => {
    const panel = window.camPanel, model = panel.content.model;
    const test = new Function("cell", "return (" + source + ")(cell);");
    for (let i = 0; i < model.cells.length; i++) {
      if (test(model.cells.get(i))) {
        panel.content.activeCellIndex = i;
        await panel.content.scrollToItem(i, "start");
        return i;
      }
    }
    return -1;
  }, predicate.toString());
}

// --- the live explorer ---------------------------------------------------------------------

async function instrument(page) {
  await page.waitForSelector(".cam-explorer img.cam-picture", { timeout: MINUTE });
  await page.evaluate(() => {
    const root = document.querySelector(".cam-explorer");
    const picture = root.querySelector("img.cam-picture");
    const caption = root.querySelector(".cam-caption");
    const log = [];
    const controlsDisabled = () => Array.from(root.querySelectorAll("select, input"))
      .map((e) => e.disabled);
    picture.addEventListener("load", () => log.push(
      { kind: "picture", t: performance.now(), src: picture.src }));
    new MutationObserver(() => log.push(
      { kind: "caption", t: performance.now(), text: caption.textContent.trim(),
        disabled: controlsDisabled() })
    ).observe(caption, { childList: true, subtree: true, characterData: true });
    window.cam = { root, picture, caption, log, controlsDisabled };
  });
}

async function pictureHash(page) {
  return page.evaluate(async () => {
    const bytes = await (await fetch(window.cam.picture.src)).arrayBuffer();
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(digest)).map((b) => b.toString(16).padStart(2, "0"))
      .join("");
  });
}

async function pictureBase64(page) {
  return page.evaluate(async () => {
    const bytes = new Uint8Array(await (await fetch(window.cam.picture.src)).arrayBuffer());
    let text = "";
    for (let i = 0; i < bytes.length; i += 8192) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
    }
    return btoa(text);
  });
}

// Choose an option of one of the explorer's dropdowns by its label, as a click would.
function choose(role, label) {
  return async (page) => page.evaluate((role, label) => {
    const select = window.cam.root.querySelector(`.cam-${role} select`);
    const index = Array.from(select.options).findIndex((o) => o.value === label
      || o.textContent.replace(/\u00a0/g, " ").startsWith(label));
    if (index < 0) throw new Error(`no option ${label} in ${role}`);
    const t0 = performance.now();
    select.selectedIndex = index;
    select.dispatchEvent(new Event("change", { bubbles: true }));
    return t0;
  }, role, label);
}

// Type a class name into "any class" key by key, then press Enter.
function typeClass(name) {
  return async (page) => {
    const input = await page.$(".cam-explorer .cam-any-class input");
    await input.click({ clickCount: 3 });
    await page.keyboard.press("Backspace");
    await input.type(name, { delay: 20 });
    const typed = await page.evaluate(() => window.cam.log.length);
    const t0 = await page.evaluate(() => performance.now());
    await page.keyboard.press("Enter");
    return { t0, typed };
  };
}

async function step(page, name, action, timeout) {
  const before = { hash: await pictureHash(page),
                   caption: await page.evaluate(() => window.cam.caption.textContent.trim()) };
  const mark = await page.evaluate(() => window.cam.log.length);
  const started = await action(page);
  const t0 = typeof started === "number" ? started : started.t0;
  await page.waitForFunction((mark) => {
    const after = window.cam.log.slice(mark);
    return after.some((e) => e.kind === "picture")
      && !window.cam.caption.textContent.includes("Computing")
      && !window.cam.controlsDisabled().some(Boolean);
  }, { timeout, polling: 20 }, mark);
  const log = await page.evaluate((mark) => window.cam.log.slice(mark), mark);
  const picture = log.find((e) => e.kind === "picture");
  const after = { hash: await pictureHash(page),
                  caption: await page.evaluate(() => window.cam.caption.textContent.trim()),
                  anyClass: await page.$eval(".cam-explorer .cam-any-class input",
                                             (e) => e.value) };
  const captions = log.filter((e) => e.kind === "caption")
    .map((e) => ({ text: e.text, disabled: e.disabled }));
  const whileTyping = typeof started === "number" ? 0 : started.typed - mark;
  return { name, before, after, captions, whileTyping, ms: picture.t - t0 };
}

async function layout(page) {
  return page.evaluate(() => {
    const box = (e) => { const r = e.getBoundingClientRect();
                         return { left: r.left, right: r.right, width: r.width }; };
    const output = window.cam.root.closest(".jp-OutputArea-output") || window.cam.root;
    return {
      area: box(output),
      controls: Array.from(window.cam.root.querySelectorAll(
        ".cam-photo select, .cam-layer select, .cam-top-class select, .cam-any-class input, "
        + ".cam-method select")).map(box),
      caption: box(window.cam.caption),
      picture: box(window.cam.picture),
      captionText: window.cam.caption.textContent.trim(),
    };
  });
}

async function shot(page, plan, name) {
  if (!plan.screenshots) return;
  fs.mkdirSync(plan.screenshots, { recursive: true });
  await page.screenshot({ path: path.join(plan.screenshots, name) });
}

async function explore(page, plan) {
  const index = await scrollToCell(page, (cell) => cell.type === "code"
    && cell.outputs.toJSON().some((o) => o.data
      && o.data["application/vnd.jupyter.widget-view+json"]));
  if (index < 0) throw new Error("no widget output in " + plan.explore);
  await instrument(page);
  await page.$eval(".cam-explorer", (e) => e.scrollIntoView({ block: "start" }));
  const result = { steps: [], cell: index, layout: { start: await layout(page) } };
  const run = async (name, action, timeout) => {
    result.steps.push(await step(page, name, action, timeout || MINUTE));
  };
  await run("photo", choose("photo", "coffee"));
  await run("method", choose("method", "Grad-CAM++"));
  await run("layer", choose("layer", "blocks.10"));
  await run("method: CAM where it is undefined", choose("method", "CAM"));
  result.layout.longCaption = await layout(page);
  await shot(page, plan, "explorer-long-caption.png");
  await run("method back", choose("method", "Grad-CAM++"));
  await run("top class", async (page) => {
    const label = await page.$eval(".cam-explorer .cam-top-class select",
                                   (s) => s.options[1].value);
    return choose("top-class", label)(page);
  });
  await run("any class", typeClass("tiger cat"));
  await run("photo after a typed class", choose("photo", "chelsea"));
  await run("the same class typed again", typeClass("tiger cat"));
  result.typedAgain = await pictureBase64(page);
  await shot(page, plan, "explorer-typed-again.png");
  await run("layer for Score-CAM", choose("layer", "blocks.2"));
  await run("method: Score-CAM", choose("method", "Score-CAM"));
  if (plan.scorecamHead) {
    const mark = await page.evaluate(() => window.cam.log.length);
    const pending = step(page, "Score-CAM at head", choose("layer", "head"), 10 * MINUTE);
    await page.waitForFunction((mark) => window.cam.log.slice(mark).some(
      (e) => e.kind === "caption" && e.text.includes("Computing")), { timeout: MINUTE }, mark);
    await shot(page, plan, "explorer-computing.png");
    result.steps.push(await pending);
  }
  return result;
}

(async () => {
  const plan = JSON.parse(process.argv[2] || "{}");
  if (!plan.base || !plan.token || !plan.notebooks) {
    console.error("usage: node jupyterlab.js '{\"base\": ..., \"token\": ..., \"notebooks\": [...]}'");
    process.exit(2);
  }
  const width = plan.width || 1400, height = plan.height || 900;
  const browser = await launch({
    args: [`--window-size=${width},${height}`],
    defaultViewport: { width, height }, protocolTimeout: 90 * MINUTE,
  });
  const report = { errors: [], console: [], offsite: [], failed: [], aborted: [], notebooks: [],
                   explorer: null };
  try {
    const page = await browser.newPage();
    await page.setRequestInterception(true);
    watch(page, plan.base, report);
    const started = Date.now();
    await page.goto(`${plan.base}lab?reset&token=${plan.token}`,
                    { waitUntil: "load", timeout: 2 * MINUTE });
    await page.waitForFunction(() => window.jupyterapp && window.jupyterapp.shell,
                               { timeout: 2 * MINUTE });
    await page.evaluate(async () => {
      await window.jupyterapp.restored;
      await window.jupyterapp.commands.execute("filebrowser:activate");
    });
    report.labSeconds = (Date.now() - started) / 1000;
    for (const notebook of plan.notebooks) {
      await openNotebook(page, notebook);
      const ran = await runAll(page, plan.notebookTimeout || 20 * MINUTE);
      const entry = { path: notebook, ...ran };
      const firstHidden = ran.cells.find((c) => c.hidden);
      if (firstHidden && plan.screenshots) {
        await scrollToCell(page, new Function("cell",
          `return cell === window.camPanel.content.model.cells.get(${firstHidden.index});`));
        await shot(page, plan, path.basename(notebook, ".ipynb") + "-hidden-checks.png");
      }
      if (notebook === plan.explore) {
        try {
          report.explorer = await explore(page, plan);
        } catch (e) {
          report.explorer = { failure: String(e && e.stack || e) };
          await shot(page, plan, "explorer-failure.png");
        }
      }
      await closeNotebook(page);
      report.notebooks.push(entry);
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report));
})().catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
