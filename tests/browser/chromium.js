// The headless Chromium both browser tests use (@sparticuz/chromium, offline), its flags,
// and a launch that tries once more after a short pause: a launch right after another
// browser's exit can fail with no output ("Failed to launch the browser process").
"use strict";
const chromium = require("@sparticuz/chromium");
const puppeteer = require("puppeteer-core");

const FLAGS = [
  "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run",
  "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage",
  "--no-default-browser-check", "--disable-domain-reliability",
  "--disable-client-side-phishing-detection", "--metrics-recording-only",
];

async function launch(options = {}) {
  const settings = { executablePath: await chromium.executablePath(), headless: "shell",
                     ...options, args: [...FLAGS, ...(options.args || [])] };
  try {
    return await puppeteer.launch(settings);
  } catch (error) {
    console.error(`first launch failed (${error.message.split("\n")[0]}); trying again`);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    return await puppeteer.launch(settings);
  }
}

module.exports = { FLAGS, launch };
