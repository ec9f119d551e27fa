// The dashboard: sign in, show one page at a time (#metagraph, #weights, ...), refresh it every few
// seconds from Pylon's JSON routes.

import { Unauthorized, forgetToken, getJSON, storeToken, storedToken } from "./api.js";
import { errorLine, fmt } from "./dom.js";
import { healthPage } from "./pages/health.js";
import { metagraphPage } from "./pages/metagraph.js";
import { usagePage } from "./pages/usage.js";
import { weightsPage } from "./pages/weights.js";

const POLL_MS = 5000;
const PAGES = { metagraph: metagraphPage, weights: weightsPage, usage: usagePage, health: healthPage };

const $ = (id) => document.getElementById(id);
const refreshers = {};
let timer = null;
let generation = 0;

function currentPage() {
  const name = location.hash.slice(1);
  return name in PAGES ? name : "metagraph";
}

function api(path, accept) {
  return getJSON(path, storedToken(), accept);
}

function showLogin(message = "") {
  clearTimeout(timer);
  generation += 1;
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").focus();
}

function signOut(message) {
  forgetToken();
  showLogin(message);
}

async function refreshStatus() {
  const o = await api("/api/v1/dashboard/overview");
  const head = o.head ? `block ${o.head.number}` : "no block yet";
  const age = o.head_age === null ? "" : ` · ${fmt(o.head_age, 1)} s ago`;
  $("status").textContent = `${head}${age}${o.stale ? " · STALE" : ""} · ${o.principal} · v${o.version}`;
  $("status").classList.toggle("stale", o.stale);
}

// One refresh of the header and the shown page, then the next one POLL_MS later (never two at once).
async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  const name = currentPage();
  const section = $(`page-${name}`);
  try {
    await Promise.all([refreshStatus(), refreshers[name](api)]);
    errorLine(section).textContent = "";
    section.dataset.loaded = "true";
  } catch (error) {
    if (error instanceof Unauthorized) {
      signOut(`Signed out: ${error.message}`);
      return;
    }
    errorLine(section).textContent = `Refresh failed: ${error.message}`;
  }
  if (mine === generation) timer = setTimeout(refresh, POLL_MS);
}

function showPage() {
  const name = currentPage();
  for (const page of Object.keys(PAGES)) $(`page-${page}`).hidden = page !== name;
  for (const link of $("nav").querySelectorAll("a")) {
    link.classList.toggle("active", link.dataset.page === name);
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  refresh();
}

function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  showPage();
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  try {
    await getJSON("/api/v1/dashboard/overview", token);
  } catch (error) {
    $("login-error").textContent =
      error instanceof Unauthorized ? `Refused: ${error.message}` : `Pylon did not answer: ${error.message}`;
    return;
  }
  $("token").value = "";
  storeToken(token);
  showApp();
}

for (const [name, page] of Object.entries(PAGES)) refreshers[name] = page($(`page-${name}`));
$("login-form").addEventListener("submit", signIn);
$("logout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", () => {
  if (storedToken()) showPage();
});
if (storedToken()) showApp();
else showLogin();
