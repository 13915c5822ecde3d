// GenArt studio page: Cognito sign-in (JSON API), uploads by presigned POST, jobs polled from the HTTP API.
// Plain ES module, no build step; CSP-compatible (no inline code, no eval, no style attributes).

const TOKENS_KEY = "genart.tokens";
const REFRESH_MARGIN_MS = 60_000; // renew the ID token a minute before it expires
const FAST_POLL_MS = 1000;
const SLOW_POLL_MS = 3000;
const FAST_POLLS = 30;
const TERMINAL = new Set(["done", "failed"]);

const $ = (id) => document.getElementById(id);

const state = {
  config: null,
  tokens: null, // {idToken, accessToken, refreshToken, expiresAt, username}
  challenge: null, // {session, username} while NEW_PASSWORD_REQUIRED is pending
  polls: { cartoonize: 0, generate: 0 }, // generation counters: a newer job in a panel stops the older poll
  shownJob: { cartoonize: null, generate: null },
};

// ---------------------------------------------------------------- errors

/** An error with the server's message (shown verbatim), code and field. */
class ServerError extends Error {
  constructor(message, { status = 0, code = "", field = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

function showError(error) {
  const box = $("error");
  const message = error instanceof Error ? error.message : String(error);
  $("error-message").textContent = message || "Something went wrong.";
  const field = error instanceof ServerError ? error.field : null;
  $("error-field").textContent = field ? `(field: ${field})` : "";
  $("error-field").hidden = !field;
  box.dataset.code = error instanceof ServerError ? error.code : "";
  box.dataset.field = field || "";
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error-message").textContent = "";
  $("error-field").textContent = "";
}

// ---------------------------------------------------------------- sign-in (Cognito JSON API)

async function cognito(target, body) {
  let response;
  try {
    response = await fetch(state.config.auth.endpoint, {
      method: "POST",
      headers: {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": `AWSCognitoIdentityProviderService.${target}`,
      },
      body: JSON.stringify(body),
    });
  } catch {
    throw new ServerError("The sign-in service cannot be reached; check your connection and try again.");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const code = String(data.__type || "").split("#").pop();
    throw new ServerError(data.message || data.Message || `Sign-in failed (HTTP ${response.status}).`, {
      status: response.status,
      code,
    });
  }
  return data;
}

function decodeJwt(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    return JSON.parse(json);
  } catch {
    return {};
  }
}

function storeTokens(result, username) {
  const claims = decodeJwt(result.IdToken);
  state.tokens = {
    idToken: result.IdToken,
    accessToken: result.AccessToken,
    refreshToken: result.RefreshToken || state.tokens?.refreshToken,
    expiresAt: Date.now() + (Number(result.ExpiresIn) || 3600) * 1000,
    username: claims["cognito:username"] || claims.username || claims.email || username,
  };
  sessionStorage.setItem(TOKENS_KEY, JSON.stringify(state.tokens));
}

async function signIn(username, password) {
  const data = await cognito("InitiateAuth", {
    AuthFlow: "USER_PASSWORD_AUTH",
    ClientId: state.config.auth.client_id,
    AuthParameters: { USERNAME: username, PASSWORD: password },
  });
  await afterAuth(data, username);
}

async function answerNewPassword(newPassword) {
  const { session, username } = state.challenge;
  const data = await cognito("RespondToAuthChallenge", {
    ChallengeName: "NEW_PASSWORD_REQUIRED",
    ClientId: state.config.auth.client_id,
    Session: session,
    ChallengeResponses: { USERNAME: username, NEW_PASSWORD: newPassword },
  });
  await afterAuth(data, username);
}

async function afterAuth(data, username) {
  if (data.AuthenticationResult) {
    state.challenge = null;
    storeTokens(data.AuthenticationResult, username);
    await enterStudio();
    return;
  }
  if (data.ChallengeName === "NEW_PASSWORD_REQUIRED") {
    const id = data.ChallengeParameters?.USER_ID_FOR_SRP || username;
    state.challenge = { session: data.Session, username: id };
    $("new-password-username").value = username; // lets password managers file the new password under the user
    $("signin-form").hidden = true;
    $("newpassword-form").hidden = false;
    $("new-password").focus();
    return;
  }
  throw new ServerError(`This sign-in step is not supported by the page: ${data.ChallengeName || "unknown"}.`);
}

async function refreshTokens() {
  const refreshToken = state.tokens?.refreshToken;
  if (!refreshToken) throw new ServerError("Your session has expired; please sign in again.", { status: 401 });
  const data = await cognito("InitiateAuth", {
    AuthFlow: "REFRESH_TOKEN_AUTH",
    ClientId: state.config.auth.client_id,
    AuthParameters: { REFRESH_TOKEN: refreshToken },
  });
  if (!data.AuthenticationResult) throw new ServerError("Your session has expired; please sign in again.");
  storeTokens(data.AuthenticationResult, state.tokens.username);
}

function signOut(message) {
  state.tokens = null;
  state.challenge = null;
  state.polls.cartoonize += 1;
  state.polls.generate += 1;
  sessionStorage.removeItem(TOKENS_KEY);
  resetPanels();
  $("job-list").replaceChildren();
  $("studio").hidden = true;
  $("account").hidden = true;
  $("signin").hidden = false;
  $("signin-form").hidden = false;
  $("newpassword-form").hidden = true;
  $("signin-password").value = "";
  $("new-password").value = "";
  $("new-password-confirm").value = "";
  if (message) showError(message);
  else clearError();
  $("signin-username").focus();
}

// ---------------------------------------------------------------- API

async function idToken() {
  if (state.tokens && Date.now() > state.tokens.expiresAt - REFRESH_MARGIN_MS) await refreshTokens();
  return state.tokens?.idToken;
}

/** Calls the studio API; returns the JSON body or throws a ServerError with the server's message. */
async function api(method, path, body, { retried = false } = {}) {
  const token = await idToken();
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`${state.config.api_base}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ServerError("The studio cannot be reached; check your connection and try again.");
  }
  const data = await response.json().catch(() => null);
  if (response.status === 401 && !retried) {
    try {
      await refreshTokens();
    } catch {
      signOut("Your session has expired; please sign in again.");
      throw new ServerError("Your session has expired; please sign in again.", { status: 401 });
    }
    return api(method, path, body, { retried: true });
  }
  if (!response.ok) {
    const error = data?.error;
    const message = error?.message || data?.message || `The request failed (HTTP ${response.status}).`;
    throw new ServerError(message, { status: response.status, code: error?.code || "", field: error?.field ?? null });
  }
  return data;
}

// ---------------------------------------------------------------- upload (presigned POST with progress)

function s3ErrorMessage(xhr) {
  try {
    const xml = new DOMParser().parseFromString(xhr.responseText, "application/xml");
    const code = xml.querySelector("Code")?.textContent;
    const message = xml.querySelector("Message")?.textContent;
    if (code || message) return `The upload was refused by storage: ${[code, message].filter(Boolean).join(": ")}`;
  } catch {
    // not XML: fall through to the status line
  }
  return `The upload failed (HTTP ${xhr.status}).`;
}

function postForm(upload, file, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(upload.fields || {})) form.append(name, value);
    form.append("file", file);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", upload.url);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve();
      else reject(new ServerError(s3ErrorMessage(xhr), { status: xhr.status, code: "upload_failed" }));
    };
    xhr.onerror = () => reject(new ServerError("The upload failed: the storage service cannot be reached."));
    xhr.send(form);
  });
}

function setUploadProgress(fraction, text) {
  $("upload").hidden = false;
  $("upload-progress").value = Math.round(fraction * 100);
  $("upload-status").textContent = text;
}

async function cartoonize(file) {
  clearError();
  resetPanel("cartoonize");
  const contentType = file.type || "application/octet-stream";
  setUploadProgress(0, `Checking ${file.name}…`);
  let upload;
  try {
    upload = await api("POST", "/uploads", { filename: file.name, content_type: contentType, size: file.size });
    setUploadProgress(0, `Uploading ${file.name}: 0%`);
    await postForm(upload, file, (fraction) =>
      setUploadProgress(fraction, `Uploading ${file.name}: ${Math.round(fraction * 100)}%`),
    );
    setUploadProgress(1, `Uploaded ${file.name}: 100%`);
  } catch (error) {
    $("upload").hidden = true;
    throw error;
  }
  const options = { smooth: $("option-smooth").checked, side_by_side: $("option-side-by-side").checked };
  const { job } = await api("POST", "/jobs", { kind: "cartoonize", upload_id: upload.upload_id, options });
  followJob(job);
}

// ---------------------------------------------------------------- jobs

function formatEta(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "";
  if (seconds < 60) return `about ${Math.max(1, Math.round(seconds))} s left`;
  const minutes = Math.round(seconds / 60);
  return `about ${minutes} min left`;
}

const STATE_TEXT = {
  queued: "Queued…",
  warming: "Warming a GPU (a few minutes)…",
  running: "Running…",
  done: "Done",
  failed: "Failed",
};

function renderProgress(panel, job) {
  const prefix = panel === "cartoonize" ? "cartoon" : "generate";
  $(`${prefix}-job`).hidden = false;
  $(`${prefix}-job`).dataset.state = job.state;
  $(`${prefix}-job`).dataset.jobId = job.id;
  const progress = job.progress || {};
  const fraction = job.state === "done" ? 1 : Number(progress.fraction) || 0;
  const percent = Math.round(fraction * 100);
  let text = STATE_TEXT[job.state] || job.state;
  if (job.state === "running" || job.state === "done") text = `${text} ${percent}%`;
  $(`${prefix}-state`).textContent = text;
  const bar = $(`${prefix}-progress`);
  if (job.state === "queued" || job.state === "warming") bar.removeAttribute("value"); // indeterminate
  else bar.value = percent;
  const frames =
    progress.frames_total && progress.frames_done != null
      ? `Frame ${progress.frames_done} of ${progress.frames_total}`
      : "";
  $(`${prefix}-frames`).textContent = job.state === "failed" ? "" : frames;
  $(`${prefix}-eta`).textContent = job.state === "running" ? formatEta(progress.eta_s) : "";
}

function mediaElement(url, contentType, label, testid) {
  const isVideo = String(contentType || "").startsWith("video/");
  const element = document.createElement(isVideo ? "video" : "img");
  element.src = url;
  element.dataset.testid = testid;
  if (isVideo) {
    element.controls = true;
    element.playsInline = true;
    element.preload = "metadata";
    element.setAttribute("aria-label", label);
  } else {
    element.alt = label;
  }
  return element;
}

function renderCartoon(job) {
  const result = job.results?.[0];
  if (!result) return;
  const original = job.input
    ? mediaElement(job.input.url, job.input.content_type, `Original: ${job.input.filename}`, "original-media")
    : document.createTextNode("The original has expired.");
  $("result-original").replaceChildren(original);
  $("result-cartoon").replaceChildren(mediaElement(result.url, result.content_type, "Cartoon", "cartoon-media"));
  const link = $("download-link");
  link.href = result.url;
  const stem = (job.input?.filename || job.id).replace(/\.[^.]*$/, "");
  link.download = `${stem}-cartoon${extensionOf(result.content_type)}`;
  $("licence").textContent = job.licence || state.config.licence || "";
  $("licence").hidden = !$("licence").textContent;
  $("cartoon-result").hidden = false;
}

function extensionOf(contentType) {
  const table = { "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "video/mp4": ".mp4" };
  return table[contentType] || "";
}

function renderGenerated(job) {
  const request = job.request || {};
  $("generate-prompt-shown").textContent = request.prompt ? `“${request.prompt}”` : "";
  const template = $("gallery-item");
  const items = (job.results || []).map((result, index) => {
    const item = template.content.firstElementChild.cloneNode(true);
    const image = item.querySelector("img");
    image.src = result.url;
    image.alt = `Generated image ${index + 1}${result.seed != null ? `, seed ${result.seed}` : ""}`;
    image.width = request.width || 512;
    image.height = request.height || 512;
    item.querySelector('[data-testid="result-seed"]').textContent =
      result.seed != null ? `Seed ${result.seed}` : "Seed unknown";
    item.dataset.seed = result.seed ?? "";
    const more = item.querySelector('[data-testid="more-like-this"]');
    more.disabled = result.seed == null;
    more.addEventListener("click", () => moreLikeThis(request, result.seed));
    const download = item.querySelector("a");
    download.href = result.url;
    download.download = `generated-${result.seed ?? index}${extensionOf(result.content_type)}`;
    return item;
  });
  $("generate-gallery").replaceChildren(...items);
  $("generate-result").hidden = false;
}

function resetPanel(panel) {
  state.polls[panel] += 1;
  state.shownJob[panel] = null;
  if (panel === "cartoonize") {
    $("upload").hidden = true;
    $("cartoon-job").hidden = true;
    $("cartoon-result").hidden = true;
    $("result-original").replaceChildren();
    $("result-cartoon").replaceChildren();
  } else {
    $("generate-job").hidden = true;
    $("generate-result").hidden = true;
    $("generate-gallery").replaceChildren();
  }
}

function resetPanels() {
  resetPanel("cartoonize");
  resetPanel("generate");
}

function panelOf(job) {
  return job.kind === "generate" ? "generate" : "cartoonize";
}

/** Shows job in its tab and polls it until it is done or failed (a newer job in the same tab stops it). */
async function followJob(job) {
  const panel = panelOf(job);
  const ticket = ++state.polls[panel];
  state.shownJob[panel] = job.id;
  selectTab(panel);
  if (location.hash !== `#job/${job.id}`) history.replaceState(null, "", `#job/${job.id}`);
  let polls = 0;
  let current = job;
  let troubled = false; // a poll failed and its error is shown: cleared by the next good poll
  for (;;) {
    if (ticket !== state.polls[panel]) return;
    renderProgress(panel, current);
    if (TERMINAL.has(current.state)) break;
    await new Promise((resolve) => setTimeout(resolve, polls < FAST_POLLS ? FAST_POLL_MS : SLOW_POLL_MS));
    polls += 1;
    if (ticket !== state.polls[panel]) return;
    try {
      current = (await api("GET", `/jobs/${encodeURIComponent(job.id)}`)).job;
      if (troubled) clearError();
      troubled = false;
    } catch (error) {
      if (ticket !== state.polls[panel]) return;
      if (error.status === 404 || error.status === 401) {
        showError(error);
        return;
      }
      // transient (network, 5xx, 429): keep polling, but say so
      showError(error);
      troubled = true;
    }
  }
  if (current.state === "failed") {
    showError(
      new ServerError(current.error?.message || "The job failed.", {
        code: current.error?.code || "failed",
        field: current.error?.field ?? null,
      }),
    );
  } else if (panel === "cartoonize") {
    renderCartoon(current);
  } else {
    renderGenerated(current);
  }
  loadJobs().catch(showError);
}

async function openJob(id) {
  clearError();
  let job;
  try {
    job = (await api("GET", `/jobs/${encodeURIComponent(id)}`)).job;
  } catch (error) {
    if (error.status === 404) resetPanels();
    throw error;
  }
  resetPanel(panelOf(job));
  if (job.kind === "generate") fillGenerateForm(job.request || {}, null);
  followJob(job);
}

async function loadJobs() {
  const { jobs } = await api("GET", "/jobs");
  const template = $("job-item");
  const items = jobs.map((job) => {
    const item = template.content.firstElementChild.cloneNode(true);
    item.dataset.jobId = job.id;
    item.dataset.state = job.state;
    const link = item.querySelector("a");
    link.href = `#job/${job.id}`;
    link.addEventListener("click", () => {
      // the job already shown: no hashchange follows, so bring its tab forward here
      if (state.shownJob[panelOf(job)] === job.id) selectTab(panelOf(job));
    });
    item.querySelector(".kind").textContent = job.kind === "generate" ? "Generate" : `Cartoonize ${job.media || ""}`;
    item.querySelector(".what").textContent =
      job.kind === "generate" ? job.request?.prompt || "" : job.input?.filename || "";
    const badge = item.querySelector(".state-badge");
    badge.textContent = job.state;
    badge.dataset.state = job.state;
    const time = item.querySelector("time");
    time.dateTime = job.created_at;
    const created = new Date(job.created_at);
    time.textContent = Number.isNaN(created.getTime()) ? job.created_at : created.toLocaleString();
    return item;
  });
  $("job-list").replaceChildren(...items);
  $("job-list-empty").hidden = items.length > 0;
}

// ---------------------------------------------------------------- generate

function fillGenerateForm(request, seed) {
  if (request.prompt != null) $("prompt").value = request.prompt;
  $("negative-prompt").value = request.negative_prompt || "";
  if (request.width && request.height) {
    const value = `${request.width}x${request.height}`;
    if ([...$("size").options].some((option) => option.value === value)) $("size").value = value;
  }
  if (request.steps) $("steps").value = request.steps;
  $("seed").value = seed == null ? "" : String(seed);
}

function generateRequest() {
  const [width, height] = $("size").value.split("x").map(Number);
  const seedText = $("seed").value.trim();
  const negative = $("negative-prompt").value.trim();
  return {
    kind: "generate",
    prompt: $("prompt").value.trim(),
    negative_prompt: negative || null,
    width,
    height,
    steps: Number($("steps").value),
    seed: seedText === "" ? null : Number(seedText),
    num_images: Number($("num-images").value) || 1,
  };
}

async function generate() {
  clearError();
  resetPanel("generate");
  $("generate-submit").disabled = true;
  try {
    const { job } = await api("POST", "/jobs", generateRequest());
    followJob(job);
  } finally {
    $("generate-submit").disabled = false;
  }
}

function moreLikeThis(request, seed) {
  fillGenerateForm(request, seed);
  generate().catch(showError);
}

// ---------------------------------------------------------------- layout: tabs, limits, drop zone

function selectTab(name) {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const selected = tab.dataset.tab === name;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !selected;
  }
}

function megabytes(bytes) {
  return `${Math.round(bytes / 1_000_000)} MB`;
}

function applyConfig() {
  const limits = state.config.limits || {};
  const parts = [];
  if (limits.max_image_bytes) parts.push(`photos (JPEG, PNG, WebP) up to ${megabytes(limits.max_image_bytes)}`);
  if (limits.max_video_bytes) parts.push(`videos (MP4, MOV) up to ${megabytes(limits.max_video_bytes)}`);
  $("limits").textContent = parts.length ? `Accepted: ${parts.join("; ")}.` : "";

  const side = limits.max_generate_side || 768;
  const sizes = (limits.generate_sizes || [[512, 512]]).filter(([w, h]) => w <= side && h <= side);
  $("size").replaceChildren(
    ...sizes.map(([w, h]) => new Option(`${w} × ${h}`, `${w}x${h}`)),
  );
  const maxSteps = limits.max_generate_steps || 50;
  $("steps").max = String(maxSteps);
  $("steps").value = String(Math.min(30, maxSteps));
  const maxImages = limits.max_generate_images || 1;
  $("num-images").replaceChildren(
    ...Array.from({ length: maxImages }, (_, i) => new Option(String(i + 1), String(i + 1))),
  );
  $("local-hint").hidden = !state.config.auth?.local;
  const enabled = state.config.generate_enabled !== false;
  $("generate-off").hidden = enabled;
  for (const element of $("generate-form").elements) element.disabled = !enabled;
}

function bindDropZone() {
  const zone = $("dropzone");
  const input = $("file-input");
  const start = (file) => {
    if (file) cartoonize(file).catch(showError);
  };
  input.addEventListener("change", () => {
    start(input.files[0]);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    start(event.dataTransfer?.files?.[0]);
  });
}

// ---------------------------------------------------------------- start

async function enterStudio() {
  clearError();
  $("signin").hidden = true;
  $("studio").hidden = false;
  $("account").hidden = false;
  $("signed-in-user").textContent = `Signed in as ${state.tokens.username}`;
  await loadJobs();
  await route();
}

async function route() {
  if (!state.tokens) return;
  const match = /^#job\/(.+)$/.exec(location.hash);
  if (!match) return;
  const id = decodeURIComponent(match[1]);
  if (state.shownJob.cartoonize === id || state.shownJob.generate === id) return;
  await openJob(id);
}

function bindEvents() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    const username = $("signin-username").value.trim();
    const password = $("signin-password").value;
    if (!username || !password) {
      showError("Enter your user name and password.");
      return;
    }
    const button = event.submitter;
    if (button) button.disabled = true;
    signIn(username, password)
      .catch(showError)
      .finally(() => {
        if (button) button.disabled = false;
      });
  });
  $("newpassword-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    const password = $("new-password").value;
    if (!password || password !== $("new-password-confirm").value) {
      showError("The two new passwords must be the same and not empty.");
      return;
    }
    answerNewPassword(password).catch(showError);
  });
  $("signout").addEventListener("click", () => signOut());
  $("error-dismiss").addEventListener("click", clearError);
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    tab.addEventListener("click", () => selectTab(tab.dataset.tab));
    tab.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
      const other = tab.dataset.tab === "cartoonize" ? "generate" : "cartoonize";
      selectTab(other);
      $(`tab-${other}`).focus();
    });
  }
  $("generate-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!$("prompt").value.trim()) {
      showError("Type a prompt first.");
      return;
    }
    generate().catch(showError);
  });
  $("refresh-jobs").addEventListener("click", () => loadJobs().catch(showError));
  window.addEventListener("hashchange", () => route().catch(showError));
  bindDropZone();
}

async function main() {
  bindEvents();
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
    state.config = await response.json();
  } catch (error) {
    $("loading").hidden = true;
    showError(`The studio's settings could not be loaded (${error.message}).`);
    return;
  }
  state.config.api_base = (state.config.api_base || "/api").replace(/\/$/, "");
  applyConfig();
  $("loading").hidden = true;
  const saved = sessionStorage.getItem(TOKENS_KEY);
  if (saved) {
    try {
      state.tokens = JSON.parse(saved);
      await enterStudio();
      return;
    } catch (error) {
      if (state.tokens) {
        showError(error);
        return;
      }
    }
  }
  $("signin").hidden = false;
  $("signin-username").focus();
}

main();
