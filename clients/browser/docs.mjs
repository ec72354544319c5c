// Loads statekeeper's /docs in Debian's chromium (headless, through playwright-core) and checks
// what a user would: every tag of /openapi.json is listed, "Authorize" takes an API key, and
// "Try it out" on GET /health shows a 200. Usage: node docs.mjs BASE_URL API_KEY SCREENSHOT.
import { chromium } from "playwright-core";

const [base, apiKey, screenshot] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

function fail(message) {
  console.error(`docs browser test: ${message}`);
  process.exit(1);
}

// "Try it out" is on already (tryItOutEnabled); its button then reads "Cancel".
async function tryOut(operation) {
  const button = operation.locator("button.try-out__btn");
  if ((await button.count()) && (await button.innerText()).includes("Try it out")) {
    await button.click();
  }
}

const doc = await (await fetch(`${base}/openapi.json`)).json();
const expectedTags = doc.tags.map((tag) => tag.name);

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  await page.goto(`${base}/docs`);
  await page.waitForSelector(".opblock-tag-section", { timeout: 20000 });
  const shownTags = await page.$$eval(".opblock-tag", (tags) =>
    tags.map((tag) => tag.getAttribute("data-tag")),
  );
  for (const tag of expectedTags) {
    if (!shownTags.includes(tag)) fail(`tag ${tag} is not listed; listed: ${shownTags}`);
  }

  // Authorize with the API key (the bearer scheme of the document).
  await page.click("button.authorize");
  await page.fill(".modal-ux input[type=text], .modal-ux input[type=password]", apiKey);
  await page.click(".modal-ux button.authorize");
  await page.click(".modal-ux button.btn-done");

  // Try GET /health.
  const health = page.locator("#operations-health-health");
  await health.locator(".opblock-summary").click();
  await tryOut(health);
  await health.locator("button.execute").click();
  const status = health.locator(".live-responses-table .response .response-col_status");
  await status.first().waitFor({ timeout: 10000 });
  const code = (await status.first().innerText()).trim();
  if (code !== "200") fail(`Try it out on GET /health showed ${code}`);
  const body = await health.locator(".live-responses-table .microlight").first().innerText();
  if (!body.includes('"status"')) fail(`the response body is not shown: ${body}`);

  // A /v1 call made from the page carries the key given to Authorize.
  const cache = page.locator("#operations-cache-cache_get");
  await cache.locator(".opblock-summary").click();
  await tryOut(cache);
  await cache.locator("input[placeholder=namespace]").fill("docs");
  await cache.locator("input[placeholder=key]").fill("absent");
  await cache.locator("button.execute").click();
  const cacheStatus = cache.locator(".live-responses-table .response .response-col_status");
  await cacheStatus.first().waitFor({ timeout: 10000 });
  const cacheCode = (await cacheStatus.first().innerText()).trim();
  if (cacheCode !== "404") fail(`an authorized GET of an absent key showed ${cacheCode}, not 404`);

  await page.screenshot({ path: screenshot, fullPage: false });
  console.log(
    `docs browser test: ${shownTags.length} tags listed, Authorize accepted the key, ` +
      `GET /health answered ${code}, an authorized cache GET ${cacheCode}; screenshot ${screenshot}`,
  );
} finally {
  await browser.close();
}
