// LiteLLM's documented realtime client, verbatim but for the URL (RELAY_URL, default as in the docs)
// and an exit after response.done.
const WebSocket = require("ws");
const url = process.env.RELAY_URL || "ws://0.0.0.0:4000/v1/realtime?model=vertex_gemini_live_text";
const ws = new WebSocket(url,
  { headers: { "api-key": process.env.LITELLM_API_KEY || "sk-key-goes-here" } });
ws.on("open", () => {
  ws.send(JSON.stringify({ type: "response.create",
    response: { modalities: ["text"], instructions: "Please assist the user." } }));
  ws.send(JSON.stringify({ type: "input_text", text: "hey there!" }));
});
ws.on("message", (m) => {
  const event = JSON.parse(m.toString());
  console.log(event);
  if (event.type === "response.done") process.exit(0);
});
ws.on("error", (e) => { console.error(e.message); process.exit(1); });
