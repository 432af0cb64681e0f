// relay playground: a small OpenAI Realtime client (GA dialect) for the relay it is served by.
// No dependencies and no build step. State that tests (and curious people) can read is kept on the page:
//   #status[data-status]               disconnected | connecting | connected | closed | error
//   #player[data-state]                idle | playing, with data-chunks-received / -played and data-flushes
//   #mic[data-state]                   off | starting | on;  #talk[data-state] idle | talking (manual turns)
//   #transcript .msg[data-role]        user | assistant | tool | error | notice, with data-item-id and data-state
//   #transcript .usage                 per response: data-response-id, data-input-tokens, data-output-tokens, ...
//                                      (hidden when a completed response used no tokens, as a tool call's may)
//   #log[data-count] > li[data-dir][data-type]   every event sent (out) and received (in), oldest first

const WORKLET = "playground/audio-worklet.js";
const RATE = 24000; // pcm16 at 24 kHz both ways
const CHUNK_MS = 50; // microphone audio per input_audio_buffer.append
const MIN_TALK = RATE / 10; // samples: the relay refuses to commit less than 100 ms
const MAX_LOG = 1500; // events kept in the log; older ones are dropped from the page
const KEY_STORAGE = "relay-playground.api-key";
const AUDIO_EVENTS = new Set(["input_audio_buffer.append", "response.output_audio.delta", "response.audio.delta"]);
const EXAMPLE_TOOLS = [
  {
    type: "function",
    name: "get_time",
    description: "The current time in a time zone.",
    parameters: {
      type: "object",
      properties: { zone: { type: "string", description: "An IANA time zone, e.g. Europe/Paris" } },
      required: ["zone"],
    },
  },
];

const $ = (id) => document.getElementById(id);
const el = {
  status: $("status"), totals: $("totals"), settingsBox: $("settings-box"), settings: $("settings"),
  key: $("api-key"), model: $("model"), modelHelp: $("model-help"), reloadModels: $("reload-models"),
  instructions: $("instructions"), voice: $("voice"), reply: $("reply"), turns: $("turns"),
  turnsHelp: $("turns-help"), transcribe: $("transcribe"), tools: $("tools"), toolsHelp: $("tools-help"),
  toolsExample: $("tools-example"),
  connect: $("connect"), apply: $("apply"), player: $("player"), transcript: $("transcript"), empty: $("empty"),
  composer: $("composer"), text: $("text"), send: $("send"), mic: $("mic"), talk: $("talk"), cancel: $("cancel"),
  level: $("level"), log: $("log"), eventCount: $("event-count"), hideAudio: $("hide-audio"),
  clearLog: $("clear-log"),
};

const state = {
  ws: null,
  opened: false,
  closing: false,
  manual: false, // the session's turn detection, as last sent
  turns: null, // el.turns.value as last sent
  responseActive: false,
  items: new Map(), // item id → its element in the transcript
  toolTurn: new Set(), // call ids of the current tool turn not answered yet
  mic: null, // {stream, ctx, source, node}
  micStarting: null,
  micRuns: 0, // counts stopMic calls: a start still waiting for the browser is dropped by a stop meanwhile
  talking: false,
  talkSamples: 0, // captured during this press
  talkHeld: [], // the press's first chunks, held until it is long enough to commit
  uncommitted: false, // audio appended since this page last sent a commit or clear (it may sit in the buffer)
  player: null, // {ctx, node, ready}
  playedByItem: new Map(), // assistant item id → samples played to the end of a chunk
  counters: { received: 0, played: 0, flushes: 0 },
  totals: { tokens: 0, responses: 0 },
  modelsRun: 0, // the latest model listing; an older one that answers late is ignored
  models: null, // {key, promise, reached} of the latest listing: the key it used, and whether the relay answered
  preparing: false, // Connect is waiting for the model list
  logCount: 0,
  logDropped: 0,
  lastError: null, // the message of the last error shown, so a failed response.done does not repeat it
};

// ---------------------------------------------------------------- small helpers

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function pcm16ToFloat(base64) {
  const bin = atob(base64);
  const out = new Float32Array(bin.length >> 1);
  for (let i = 0; i < out.length; i++) {
    let v = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
    if (v >= 0x8000) v -= 0x10000;
    out[i] = v / 0x8000;
  }
  return out;
}

function nearBottom(box) {
  return box.scrollHeight - box.scrollTop - box.clientHeight < 48;
}

function make(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("data-") || name.startsWith("aria-") || name === "for" || name === "role") {
      node.setAttribute(name, value);
    } else node[name] = value;
  }
  node.append(...children);
  return node;
}

function connected() {
  return state.ws !== null && state.ws.readyState === WebSocket.OPEN;
}

// ---------------------------------------------------------------- status and settings

function setStatus(status, text) {
  el.status.dataset.status = status;
  el.status.textContent = text;
  el.status.title = text; // a phone shows it cut short
  const live = status === "connected";
  el.connect.textContent = status === "connecting" || live ? "Disconnect" : "Connect";
  el.connect.dataset.connected = String(status === "connecting" || live);
  for (const node of [el.text, el.send, el.apply, el.mic, el.talk]) node.disabled = !live;
  if (!live) el.cancel.disabled = true;
  showTurnsHelp();
}

function parseTools() {
  const raw = el.tools.value.trim();
  if (!raw) return { tools: [] };
  let tools;
  try {
    tools = JSON.parse(raw);
  } catch (err) {
    return { error: `Tools: not valid JSON (${err.message})` };
  }
  if (!Array.isArray(tools)) return { error: "Tools: expected a JSON list of tools, [ {...}, ... ]" };
  for (const [i, tool] of tools.entries()) {
    if (typeof tool !== "object" || tool === null || typeof tool.name !== "string") {
      return { error: `Tools: entry ${i} needs a "name"` };
    }
  }
  return { tools: tools.map((tool) => ({ type: "function", ...tool })) };
}

function checkTools() {
  const { error } = parseTools();
  el.tools.setAttribute("aria-invalid", String(Boolean(error)));
  el.toolsHelp.dataset.state = error ? "error" : "ok";
  el.toolsHelp.textContent = error || "A list of function tools. Calls show up in the conversation for you to answer.";
  return !error;
}

function turnDetection() {
  switch (el.turns.value) {
    case "manual":
      return null;
    case "semantic_vad":
      return { type: "semantic_vad", eagerness: "auto", create_response: true, interrupt_response: true };
    default:
      return {
        type: "server_vad", threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500,
        create_response: true, interrupt_response: true,
      };
  }
}

function sessionUpdate() {
  const format = { type: "audio/pcm", rate: RATE };
  return {
    type: "session.update",
    session: {
      type: "realtime",
      instructions: el.instructions.value,
      output_modalities: [el.reply.value],
      audio: {
        input: {
          format,
          transcription: el.transcribe.checked ? { model: "gpt-4o-transcribe" } : null,
          turn_detection: turnDetection(),
        },
        output: { format, voice: el.voice.value },
      },
      tools: parseTools().tools || [],
      tool_choice: "auto",
    },
  };
}

// Switching between hands-free and push-to-talk closes the microphone (dropping audio not yet committed):
// the other mode starts it again with its own control, so what the page shows is always what the mic does.
function applyTurnMode() {
  const manual = el.turns.value === "manual";
  if (manual !== state.manual) {
    stopTalking(false);
    stopMic();
  }
  state.manual = manual;
  state.turns = el.turns.value;
  el.mic.hidden = manual;
  el.talk.hidden = !manual;
  showTurnsHelp();
}

const TURNS_HELP = {
  server_vad: "Hands-free: start the mic and talk; the model answers when you pause.",
  semantic_vad: "Hands-free: start the mic and talk; the model answers when you seem to have finished.",
  manual: "Push to talk: hold the button (or Space) while you speak; the model answers when you let go.",
};

function showTurnsHelp() {
  const pending = connected() && state.turns !== null && el.turns.value !== state.turns;
  el.turnsHelp.textContent = TURNS_HELP[el.turns.value] + (pending ? " Update session to switch." : "");
}

// ---------------------------------------------------------------- models

// Lists the models for the key typed now; the promise settles once the list (or the reason for none) is shown.
function loadModels() {
  const run = ++state.modelsRun;
  const models = { key: el.key.value.trim(), promise: null, reached: false };
  models.promise = listModels(models, run);
  state.models = models;
  return models.promise;
}

async function listModels(models, run) {
  const key = models.key;
  const help = el.modelHelp;
  const current = () => run === state.modelsRun;
  const failed = (text) => {
    if (!current()) return;
    fillModels([]);
    help.dataset.state = "error";
    help.textContent = text;
  };
  if (!key && document.documentElement.dataset.auth === "required") {
    models.reached = true;
    failed("This relay needs an API key: type it above to list its models.");
    return;
  }
  help.dataset.state = "loading";
  help.textContent = "Loading models…";
  let response;
  let body;
  try {
    response = await fetch("v1/models", { headers: key ? { Authorization: `Bearer ${key}` } : {}, cache: "no-store" });
    models.reached = true;
    if (response.ok) body = await response.json();
  } catch (err) {
    failed(`Could not reach the relay (${err.message}).`);
    return;
  }
  if (!response.ok) {
    failed(response.status === 401
      ? (key ? "The relay refused this API key." : "This relay needs an API key: type it above.")
      : `Could not list the models (HTTP ${response.status}).`);
    return;
  }
  if (!current()) return;
  const all = Array.isArray(body.data) ? body.data : [];
  const realtime = all.filter((m) => (m.kind || "realtime") === "realtime");
  fillModels(realtime.map((m) => m.id));
  help.dataset.state = realtime.length ? "ok" : "error";
  const others = all.length - realtime.length;
  help.textContent = realtime.length
    ? `${realtime.length} conversation model${realtime.length === 1 ? "" : "s"}` +
      (others ? ` (${others} transcription or translation model${others === 1 ? "" : "s"} not listed)` : "")
    : "The relay serves no conversation model.";
}

function fillModels(ids) {
  const previous = el.model.value;
  el.model.replaceChildren(...ids.map((id) => make("option", { value: id, text: id })));
  if (ids.includes(previous)) el.model.value = previous;
  el.model.disabled = ids.length === 0;
}

// ---------------------------------------------------------------- event log

function summarize(event) {
  if (!AUDIO_EVENTS.has(event.type)) return event;
  const copy = { ...event };
  for (const field of ["audio", "delta"]) {
    if (typeof copy[field] === "string") copy[field] = `<${copy[field].length} characters of base64 audio>`;
  }
  return copy;
}

// "a.b.c" with a line-break opportunity after each dot, for long event types in a narrow column.
function breakable(text) {
  return text.split(/(?<=\.)/).flatMap((part, i) => (i ? [document.createElement("wbr"), part] : [part]));
}

function logEvent(dir, event) {
  const follow = nearBottom(el.log);
  const shown = summarize(event);
  const details = make("details", {},
    make("summary", {},
      make("span", { class: "dir", text: dir === "out" ? "↑" : "↓", "aria-label": dir === "out" ? "sent" : "received" }),
      make("span", { class: "type" }, ...breakable(String(event.type))),
      make("time", { text: new Date().toLocaleTimeString([], { hour12: false }) })));
  details.addEventListener("toggle", () => {
    if (!details.open) return;
    if (!details.querySelector("pre")) details.append(make("pre", { text: JSON.stringify(shown, null, 2) }));
    // an event opened near the bottom of the log: scroll so its JSON shows, not just its first lines
    const pre = details.querySelector("pre");
    const box = el.log.getBoundingClientRect();
    const below = pre.getBoundingClientRect().bottom - box.bottom;
    if (below > 0) el.log.scrollTop += Math.min(below, details.getBoundingClientRect().top - box.top);
  });
  const entry = make("li", { "data-dir": dir, "data-type": String(event.type) }, details);
  if (AUDIO_EVENTS.has(event.type)) entry.dataset.audio = "true";
  el.log.append(entry);
  state.logCount += 1;
  if (el.log.querySelectorAll("li[data-type]").length > MAX_LOG) {
    el.log.querySelector("li[data-type]").remove();
    state.logDropped += 1;
    let note = el.log.querySelector("li.dropped");
    if (!note) {
      note = make("li", { class: "dropped" });
      el.log.prepend(note);
    }
    note.textContent = `${state.logDropped} older events not shown`;
  }
  el.log.dataset.count = String(state.logCount);
  el.eventCount.textContent = String(state.logCount);
  if (follow) el.log.scrollTop = el.log.scrollHeight;
}

// ---------------------------------------------------------------- conversation

function addToTranscript(node) {
  const follow = nearBottom(el.transcript);
  el.empty.hidden = true;
  el.transcript.append(node);
  if (follow) el.transcript.scrollTop = el.transcript.scrollHeight;
}

function message(itemId, role) {
  let node = itemId ? state.items.get(itemId) : null;
  if (!node) {
    node = make("div", { class: "msg", "data-role": role, "data-state": "streaming" },
      make("span", { class: "role", text: role === "user" ? "You" : "Assistant" }),
      make("span", { class: "text" }));
    if (itemId) {
      node.dataset.itemId = itemId;
      state.items.set(itemId, node);
    }
    addToTranscript(node);
  }
  return node;
}

function setText(node, text, append = false) {
  const follow = nearBottom(el.transcript);
  const span = node.querySelector(".text");
  span.textContent = append ? span.textContent + text : text;
  if (follow) el.transcript.scrollTop = el.transcript.scrollHeight;
}

function notice(text, role = "notice") {
  addToTranscript(make("div", { class: "msg", "data-role": role, role: role === "error" ? "alert" : null, text }));
}

function showError(error) {
  const code = error && (error.code || error.type);
  const text = (error && error.message) || "Unknown error";
  state.lastError = text;
  notice(code ? `Error (${code}): ${text}` : `Error: ${text}`, "error");
}

function showItem(item) {
  if (!item || !item.id) return;
  if (item.type === "message" && (item.role === "user" || item.role === "assistant")) {
    const node = message(item.id, item.role);
    const content = Array.isArray(item.content) ? item.content : [];
    const audio = content.some((part) => /audio/.test(part.type || ""));
    if (audio) node.dataset.kind = "audio";
    const texts = content.map((part) => part.text || part.transcript).filter((t) => typeof t === "string" && t);
    if (texts.length) setText(node, texts.join("\n"));
    else if (item.role === "user" && audio && !el.transcribe.checked) setText(node, "(speech, not transcribed)");
    if (item.role === "user" || item.status === "completed") node.dataset.state = "done";
    if (item.status === "incomplete") node.dataset.state = "incomplete";
  } else if (item.type === "function_call") {
    toolCall(item);
  }
}

function toolCall(item) {
  let node = state.items.get(item.id);
  if (!node) {
    const outputId = `tool-output-${state.items.size}`;
    const output = make("textarea", { id: outputId, class: "tool-output", rows: 2, spellcheck: false,
      placeholder: 'e.g. {"ok": true}' });
    const button = make("button", { type: "button", class: "tool-send primary", text: "Send output" });
    node = make("div", { class: "msg", "data-role": "tool", "data-state": "pending", "data-item-id": item.id },
      make("span", { class: "role", text: "Tool call" }),
      make("code", { class: "call" }),
      make("label", { for: outputId, class: "help", text: "Your answer (the function's output):" }),
      make("div", { class: "answer" }, output, button));
    button.addEventListener("click", () => answerTool(node));
    state.items.set(item.id, node);
    addToTranscript(node);
  }
  if (item.call_id) node.dataset.callId = item.call_id;
  if (item.name) node.dataset.name = item.name;
  if (typeof item.arguments === "string") node.dataset.arguments = item.arguments;
  node.querySelector(".call").textContent = `${node.dataset.name || "?"}(${node.dataset.arguments || ""})`;
  return node;
}

function answerTool(node) {
  if (!connected() || node.dataset.state !== "pending") return;
  const output = node.querySelector("textarea");
  send({ type: "conversation.item.create",
    item: { type: "function_call_output", call_id: node.dataset.callId, output: output.value } });
  node.dataset.state = "answered";
  output.readOnly = true;
  state.toolTurn.delete(node.dataset.callId);
  if (state.toolTurn.size === 0) send({ type: "response.create" }); // every call of the turn answered
}

function showUsage(response) {
  const usage = response.usage;
  if (!usage) return;
  const inDetails = usage.input_token_details || {};
  const outDetails = usage.output_token_details || {};
  const split = (d) => ["text", "audio", "image"].filter((k) => d[`${k}_tokens`]).map((k) => `${k} ${d[`${k}_tokens`]}`);
  const parts = [`${usage.total_tokens ?? 0} tokens`,
    `in ${usage.input_tokens ?? 0}${split(inDetails).length ? ` (${split(inDetails).join(", ")})` : ""}`,
    `out ${usage.output_tokens ?? 0}${split(outDetails).length ? ` (${split(outDetails).join(", ")})` : ""}`];
  const status = response.status && response.status !== "completed" ? response.status : "";
  if (status) parts.push(status);
  const none = !usage.total_tokens; // e.g. a response that only called a tool: no line of zeros
  addToTranscript(make("p", {
    class: "usage", text: none ? status : parts.join(" · "), hidden: none && !status,
    "data-response-id": response.id || "",
    "data-status": response.status || "", "data-input-tokens": String(usage.input_tokens ?? 0),
    "data-output-tokens": String(usage.output_tokens ?? 0), "data-total-tokens": String(usage.total_tokens ?? 0),
  }));
  state.totals.tokens += usage.total_tokens || 0;
  state.totals.responses += 1;
  el.totals.dataset.totalTokens = String(state.totals.tokens);
  el.totals.dataset.responses = String(state.totals.responses);
  el.totals.replaceChildren(`${state.totals.tokens} tokens`, make("span", { class: "responses",
    text: ` · ${state.totals.responses} response${state.totals.responses === 1 ? "" : "s"}` }));
}

// ---------------------------------------------------------------- the socket

function send(event) {
  if (!connected()) return;
  state.ws.send(JSON.stringify(event));
  logEvent("out", event);
}

// The model list for the key typed now: the listing under way, or a new one if the key changed since (a key
// typed and Connect clicked at once) or the relay could not be reached.
async function modelsForKey() {
  const key = el.key.value.trim();
  const models = state.models;
  if (models && models.key === key) {
    await models.promise;
    if (state.models !== models || models.reached) return;
  }
  await loadModels();
}

async function connect() {
  if (state.preparing) return;
  if (!checkTools()) {
    el.tools.focus();
    return;
  }
  ensurePlayer(); // in the click: browsers start audio only from a user gesture
  state.preparing = true;
  try {
    await modelsForKey();
  } finally {
    state.preparing = false;
  }
  if (state.ws) return;
  const model = el.model.value;
  if (!model) {
    if (el.modelHelp.dataset.state !== "error") { // otherwise it already says why there is none
      el.modelHelp.dataset.state = "error";
      el.modelHelp.textContent = "Choose a model first.";
    }
    el.model.focus();
    return;
  }
  const url = new URL("v1/realtime", document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("model", model);
  const key = el.key.value.trim();
  // The key travels in the subprotocol list (browsers cannot set headers), never in the URL.
  const protocols = key ? ["realtime", `openai-insecure-api-key.${key}`] : ["realtime"];
  let ws;
  try {
    ws = new WebSocket(url, protocols);
  } catch (err) {
    showError({ message: `Cannot open the WebSocket: ${err.message}` });
    return;
  }
  state.ws = ws;
  state.opened = false;
  state.closing = false;
  state.turns = null;
  setStatus("connecting", `Connecting to ${model}…`);
  ws.addEventListener("open", () => {
    if (state.ws !== ws) return;
    state.opened = true;
    setStatus("connected", `Connected · ${model}`);
    notice(`Connected to ${model}`);
    applyTurnMode();
    send(sessionUpdate());
    if (window.matchMedia("(max-width: 720px)").matches) el.settingsBox.open = false;
    el.text.focus();
  });
  ws.addEventListener("message", (m) => {
    if (state.ws !== ws) return;
    let event;
    try {
      event = JSON.parse(m.data);
    } catch {
      showError({ message: "The relay sent something that is not JSON." });
      return;
    }
    logEvent("in", event);
    handle(event);
  });
  ws.addEventListener("close", (e) => {
    if (state.ws !== ws) return;
    const why = `${e.code}${e.reason ? ` ${e.reason}` : ""}`;
    if (state.closing) {
      setStatus("disconnected", "Disconnected");
      notice("Disconnected");
    } else if (!state.opened) {
      setStatus("error", "Could not connect");
      showError({ message: "Could not connect to the relay: it refused the connection (a wrong API key or an " +
        "unknown model) or cannot be reached." });
    } else {
      setStatus("closed", `Connection closed (${why})`);
      showError({ code: `closed ${e.code}`, message: `The relay closed the connection${e.reason ? `: ${e.reason}` : "."}` });
    }
    state.ws = null;
    endOfConnection();
  });
}

function disconnect() {
  if (!state.ws) return;
  state.closing = true;
  state.ws.close(1000, "bye");
}

function endOfConnection() {
  state.responseActive = false;
  state.toolTurn.clear();
  stopTalking(false);
  stopMic();
  flushPlayer(false);
}

function handle(event) {
  switch (event.type) {
    case "session.created":
    case "session.updated":
      break;
    case "error":
      showError(event.error);
      break;
    case "conversation.item.added":
    case "conversation.item.created":
    case "conversation.item.done":
    case "conversation.item.retrieved":
      showItem(event.item);
      break;
    case "input_audio_buffer.committed":
      if (event.item_id) message(event.item_id, "user").dataset.kind = "audio";
      break;
    case "input_audio_buffer.speech_started":
      flushPlayer(true); // barge-in: stop the assistant's speech
      break;
    case "conversation.item.input_audio_transcription.delta":
      setText(message(event.item_id, "user"), event.delta || "", true);
      break;
    case "conversation.item.input_audio_transcription.completed": {
      const node = message(event.item_id, "user");
      node.dataset.state = "done";
      setText(node, event.transcript || "");
      break;
    }
    case "conversation.item.input_audio_transcription.failed":
      setText(message(event.item_id, "user"), "(transcription failed)");
      break;
    case "response.created":
      state.responseActive = true;
      state.lastError = null;
      el.cancel.disabled = false;
      break;
    case "response.output_item.added":
      showItem(event.item);
      if (event.item && event.item.type === "function_call" && event.item.call_id) {
        state.toolTurn.add(event.item.call_id);
      }
      break;
    case "response.output_item.done":
      showItem(event.item);
      if (event.item && event.item.type === "message") {
        message(event.item.id, "assistant").dataset.state = event.item.status === "incomplete" ? "incomplete" : "done";
      }
      break;
    case "response.content_part.added":
      if (event.part && /audio/.test(event.part.type || "")) message(event.item_id, "assistant").dataset.kind = "audio";
      break;
    case "response.output_text.delta":
    case "response.output_audio_transcript.delta":
    case "response.text.delta":
    case "response.audio_transcript.delta":
      setText(message(event.item_id, "assistant"), event.delta || "", true);
      break;
    case "response.output_text.done":
    case "response.text.done":
      setText(message(event.item_id, "assistant"), event.text || "");
      break;
    case "response.output_audio_transcript.done":
    case "response.audio_transcript.done":
      setText(message(event.item_id, "assistant"), event.transcript || "");
      break;
    case "response.output_audio.delta":
    case "response.audio.delta":
      play(event.delta, event.item_id);
      break;
    case "response.function_call_arguments.delta": {
      const node = state.items.get(event.item_id);
      if (node) {
        node.dataset.arguments = (node.dataset.arguments || "") + (event.delta || "");
        toolCall({ id: event.item_id });
      }
      break;
    }
    case "response.function_call_arguments.done":
      toolCall({ id: event.item_id, call_id: event.call_id, name: event.name, arguments: event.arguments });
      break;
    case "response.done": {
      const response = event.response || {};
      state.responseActive = false;
      el.cancel.disabled = true;
      for (const node of el.transcript.querySelectorAll('.msg[data-role="assistant"][data-state="streaming"]')) {
        node.dataset.state = response.status === "completed" ? "done" : "incomplete";
      }
      if (response.status === "cancelled") flushPlayer(false);
      if (response.status === "failed") {
        const err = response.status_details && response.status_details.error;
        if (!err || err.message !== state.lastError) showError(err || { message: "The response failed." });
      }
      showUsage(response);
      break;
    }
    default:
      break;
  }
}

// ---------------------------------------------------------------- speaker

function ensurePlayer() {
  if (state.player) {
    if (state.player.ctx.state === "suspended") state.player.ctx.resume();
    return state.player;
  }
  const ctx = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
  const player = { ctx, node: null, ready: null };
  player.ready = ctx.audioWorklet.addModule(WORKLET).then(() => {
    const node = new AudioWorkletNode(ctx, "pcm16-player", { numberOfInputs: 0, outputChannelCount: [1] });
    node.port.onmessage = (e) => playerMessage(e.data);
    node.connect(ctx.destination);
    player.node = node;
  }).catch((err) => showError({ message: `Audio output is not available: ${err.message}` }));
  state.player = player;
  return player;
}

function updatePlayer() {
  const c = state.counters;
  el.player.dataset.chunksReceived = String(c.received);
  el.player.dataset.chunksPlayed = String(c.played);
  el.player.dataset.flushes = String(c.flushes);
}

function play(base64, itemId) {
  if (!base64) return;
  const player = ensurePlayer();
  const samples = pcm16ToFloat(base64);
  state.counters.received += 1;
  updatePlayer();
  player.ready.then(() => {
    if (player.node) player.node.port.postMessage({ type: "chunk", samples, item: itemId || null }, [samples.buffer]);
  });
}

// Drop queued speech. `truncate`: tell the relay how much of the item was heard (conversation.item.truncate),
// as on a barge-in; a cancelled response needs no truncation.
function flushPlayer(truncate) {
  const player = state.player;
  if (!player) return;
  player.ready.then(() => {
    if (player.node) player.node.port.postMessage({ type: "flush", truncate });
  });
}

function playerMessage(msg) {
  if (msg.type === "state") {
    el.player.dataset.state = msg.state;
    el.player.querySelector(".player-text").textContent = msg.state === "playing" ? "Speaking" : "Speaker idle";
  } else if (msg.type === "played") {
    state.counters.played += 1;
    if (msg.item) state.playedByItem.set(msg.item, (state.playedByItem.get(msg.item) || 0) + msg.samples);
    updatePlayer();
  } else if (msg.type === "flushed" && msg.dropped > 0) {
    state.counters.flushes += 1;
    updatePlayer();
    if (msg.truncate && msg.item && state.items.has(msg.item)) {
      const heard = (state.playedByItem.get(msg.item) || 0) + msg.played;
      send({ type: "conversation.item.truncate", item_id: msg.item, content_index: 0,
        audio_end_ms: Math.floor((heard * 1000) / RATE) });
    }
  }
}

// ---------------------------------------------------------------- microphone

function setMicState(value) {
  el.mic.dataset.state = value;
  el.mic.setAttribute("aria-pressed", String(value === "on"));
  el.mic.textContent = value === "on" ? "Stop mic" : value === "starting" ? "Starting…" : "Start mic";
  el.level.dataset.active = String(value === "on");
  if (value !== "on") el.level.value = 0;
}

async function startMic() {
  if (state.mic) return state.mic;
  if (state.micStarting) return state.micStarting;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError({ message: "The microphone needs a secure page: open the playground over https or on localhost." });
    return null;
  }
  setMicState("starting");
  const run = state.micRuns;
  state.micStarting = (async () => {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      showError({ message: `No microphone: ${err.message}` });
      setMicState("off");
      return null;
    }
    const ctx = new AudioContext({ latencyHint: "interactive" }); // the device's rate; the worklet resamples
    try {
      await ctx.audioWorklet.addModule(WORKLET);
    } catch (err) {
      showError({ message: `Audio capture is not available: ${err.message}` });
      for (const track of stream.getTracks()) track.stop();
      ctx.close();
      setMicState("off");
      return null;
    }
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "pcm16-capture", {
      numberOfOutputs: 0, processorOptions: { targetRate: RATE, chunkMs: CHUNK_MS },
    });
    node.port.onmessage = (e) => captured(e.data);
    source.connect(node);
    if (!connected() || run !== state.micRuns) { // disconnected or stopped while the browser asked for the mic
      for (const track of stream.getTracks()) track.stop();
      ctx.close();
      setMicState("off");
      return null;
    }
    state.mic = { stream, ctx, source, node };
    setMicState("on");
    return state.mic;
  })();
  try {
    return await state.micStarting;
  } finally {
    state.micStarting = null;
  }
}

function stopMic() {
  const mic = state.mic;
  state.mic = null;
  state.micRuns += 1;
  clearUncommitted(); // speech cut off by the stop is not a turn: it would come back as an empty one later
  if (mic) {
    mic.node.port.postMessage({ type: "stop" });
    mic.source.disconnect();
    for (const track of mic.stream.getTracks()) track.stop();
    mic.ctx.close();
  }
  setMicState("off");
}

function captured(msg) {
  if (msg.type !== "chunk" || !state.mic) return;
  el.level.value = Math.min(1, msg.rms * 4);
  if (!connected() || (state.manual && !state.talking)) return;
  if (state.talking) {
    state.talkSamples += msg.pcm.byteLength / 2;
    // A press goes out once it is long enough to commit: Gemini hears audio as it streams, and a clear
    // cannot take a tap back from it.
    if (state.talkSamples < MIN_TALK) {
      state.talkHeld.push(msg.pcm);
      return;
    }
    for (const pcm of state.talkHeld.splice(0)) append(pcm);
  }
  append(msg.pcm);
}

function append(pcm) {
  send({ type: "input_audio_buffer.append", audio: toBase64(pcm) });
  state.uncommitted = true;
}

// Drops the audio appended since the last commit (the relay answers with input_audio_buffer.cleared).
function clearUncommitted(always = false) {
  if ((always || state.uncommitted) && connected()) send({ type: "input_audio_buffer.clear" });
  state.uncommitted = false;
}

async function startTalking() {
  if (!connected() || state.talking) return;
  state.talking = true;
  state.talkSamples = 0;
  state.talkHeld = [];
  el.talk.dataset.state = "talking";
  el.talk.textContent = "Release to send";
  if (state.responseActive) send({ type: "response.cancel" }); // talking over the assistant interrupts it
  flushPlayer(true);
  await startMic();
}

function stopTalking(commit = true) {
  if (!state.talking) return;
  state.talking = false;
  el.talk.dataset.state = "idle";
  el.talk.textContent = "Hold to talk";
  state.talkHeld = []; // a tap's audio, never sent
  if (!connected()) return;
  if (!commit || state.talkSamples < MIN_TALK) {
    if (commit) notice("Hold the button while you speak.");
    clearUncommitted(commit); // a tap leaves no audio behind for the next turn
    return;
  }
  send({ type: "input_audio_buffer.commit" });
  state.uncommitted = false;
  send({ type: "response.create" });
}

// ---------------------------------------------------------------- wiring

function init() {
  el.key.value = sessionStorage.getItem(KEY_STORAGE) || "";
  el.tools.value = JSON.stringify(EXAMPLE_TOOLS, null, 2);
  el.key.addEventListener("change", () => {
    const key = el.key.value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    loadModels();
  });
  el.reloadModels.addEventListener("click", loadModels);
  el.turns.addEventListener("change", showTurnsHelp);
  el.tools.addEventListener("input", checkTools);
  el.toolsExample.addEventListener("click", () => {
    el.tools.value = JSON.stringify(EXAMPLE_TOOLS, null, 2);
    checkTools();
  });
  el.settings.addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.ws) disconnect();
    else connect();
  });
  el.apply.addEventListener("click", () => {
    if (!checkTools()) return;
    stopTalking(false);
    applyTurnMode();
    send(sessionUpdate());
  });
  el.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = el.text.value.trim();
    if (!text || !connected()) return;
    send({ type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] } });
    send({ type: "response.create" });
    el.text.value = "";
  });
  el.mic.addEventListener("click", () => {
    if (state.mic) stopMic();
    else startMic();
  });
  el.talk.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    el.talk.setPointerCapture(e.pointerId);
    startTalking();
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    el.talk.addEventListener(type, () => stopTalking(true));
  }
  el.talk.addEventListener("keydown", (e) => {
    if ((e.key === " " || e.key === "Enter") && !e.repeat) {
      e.preventDefault();
      startTalking();
    }
  });
  el.talk.addEventListener("keyup", (e) => {
    if (e.key === " " || e.key === "Enter") stopTalking(true);
  });
  el.cancel.addEventListener("click", () => {
    send({ type: "response.cancel" });
    flushPlayer(true);
  });
  el.hideAudio.addEventListener("change", () => el.log.classList.toggle("hide-audio", el.hideAudio.checked));
  el.clearLog.addEventListener("click", () => {
    el.log.replaceChildren();
    state.logCount = 0;
    state.logDropped = 0;
    el.log.dataset.count = "0";
    el.eventCount.textContent = "0";
  });
  // The settings fold away on a phone; on a wide screen they stay open.
  el.settingsBox.querySelector("summary").addEventListener("click", (e) => {
    if (!window.matchMedia("(max-width: 720px)").matches) e.preventDefault();
  });
  setStatus("disconnected", "Disconnected");
  applyTurnMode();
  loadModels();
}

init();
