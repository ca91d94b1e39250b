// The playground: streams /v1/chat/completions into the page. Everything the model or the
// user writes goes in with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const conversation = []; // the user and assistant messages so far, sent with each request
let model = "";
let controller = null; // the running request's, to stop it

function element(tag, className, text = "") {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}

function json(id, what) {
  const text = $(id).value.trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${what} is not valid JSON: ${error.message}`);
  }
}

function number(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

// The request the current settings make, with `prompt` as the next user message.
function requestBody(prompt) {
  const system = $("system").value.trim();
  const messages = [...(system ? [{ role: "system", content: system }] : []), ...conversation];
  if (prompt) messages.push({ role: "user", content: prompt });
  const body = { model, messages, stream: true, stream_options: { include_usage: true } };
  for (const field of ["temperature", "top_p", "max_tokens", "seed"]) {
    if (number(field) !== undefined) body[field] = number(field);
  }
  const stop = $("stop").value.split("\n").filter((line) => line !== "");
  if (stop.length) body.stop = stop;
  const format = $("format").value;
  if (format === "json_object") body.response_format = { type: "json_object" };
  if (format === "json_schema") {
    const schema = json("schema", "The JSON schema") || {};
    body.response_format = { type: "json_schema", json_schema: { name: "answer", schema } };
  }
  const tools = json("tools", "tools");
  if (tools) body.tools = tools;
  return body;
}

// One answer in the log: reasoning apart, the text, tool calls, then the figures.
class Answer {
  constructor() {
    this.node = element("div", "turn assistant");
    this.reasoning = element("div", "reasoning");
    this.reasoning.hidden = true;
    this.content = element("div", "content");
    this.meta = element("div", "meta");
    this.node.append(this.reasoning, this.content, this.meta);
    this.text = "";
    this.calls = []; // per tool call index: {name, arguments, node}
    this.started = performance.now();
    this.first = null;
    $("log").append(this.node);
  }

  delta(delta) {
    const reasoning = delta.reasoning_content || delta.reasoning;
    // The first token is the first delta with output (the first carries the role alone).
    if (this.first === null && (reasoning || delta.content || delta.tool_calls)) {
      this.first = performance.now();
    }
    if (reasoning) {
      this.reasoning.hidden = false;
      this.reasoning.textContent += reasoning;
    }
    if (delta.content) {
      this.text += delta.content;
      this.content.textContent = this.text;
    }
    for (const call of delta.tool_calls || []) this.toolCall(call);
  }

  toolCall(call) {
    let shown = this.calls[call.index];
    if (!shown) {
      shown = { name: "", arguments: "", node: element("pre", "tool-call") };
      this.calls[call.index] = shown;
      this.node.insertBefore(shown.node, this.meta);
    }
    shown.name += (call.function && call.function.name) || "";
    shown.arguments += (call.function && call.function.arguments) || "";
    shown.node.textContent = `tool call: ${shown.name}(${shown.arguments})`;
  }

  // The figures under the answer: usage, time to first token, tokens a second.
  done(usage, finish) {
    const end = performance.now();
    const parts = [];
    if (usage) parts.push(`prompt ${usage.prompt_tokens}`, `completion ${usage.completion_tokens}`);
    if (this.first !== null) {
      parts.push(`TTFT ${((this.first - this.started) / 1000).toFixed(3)} s`);
      const seconds = (end - this.first) / 1000;
      if (usage && seconds > 0) parts.push(`${(usage.completion_tokens / seconds).toFixed(1)} tokens/s`);
    }
    parts.push(finish);
    this.meta.textContent = parts.join(" · ");
  }

  fail(message) {
    this.node.append(element("div", "error", message));
  }
}

// The server-sent events of a response, as parsed JSON objects.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const frames = buffer.split("\n\n");
    buffer = frames.pop();
    for (const frame of frames) {
      for (const line of frame.split("\n")) {
        if (!line.startsWith("data: ")) continue; // keep-alive comments
        if (line === "data: [DONE]") return;
        yield JSON.parse(line.slice(6));
      }
    }
  }
}

async function send(prompt) {
  $("log").append(element("div", "turn user", prompt));
  const answer = new Answer();
  controller = new AbortController();
  setRunning(true);
  let usage = null;
  let finish = "no finish";
  let accepted = false; // the gateway took the request: the turn joins the conversation
  try {
    const response = await gateway.fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(requestBody(prompt)),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await gateway.error(response));
    accepted = true;
    for await (const event of events(response)) {
      if (event.error) throw new Error(event.error.message || JSON.stringify(event.error));
      if (event.usage) usage = event.usage;
      for (const choice of event.choices || []) {
        answer.delta(choice.delta || {});
        if (choice.finish_reason) finish = `finish: ${choice.finish_reason}`;
      }
    }
  } catch (error) {
    finish = error.name === "AbortError" ? "stopped" : "failed";
    if (finish === "failed") answer.fail(error.message);
  } finally {
    if (accepted) conversation.push({ role: "user", content: prompt }, { role: "assistant", content: answer.text });
    answer.done(usage, finish);
    controller = null;
    setRunning(false);
    showSnippets();
  }
}

function setRunning(running) {
  $("send").disabled = running;
  $("stop-button").disabled = !running;
}

// Python's literal for a JSON value.
function python(value, indent = "") {
  const inner = `${indent}    `;
  if (value === null) return "None";
  if (value === true || value === false) return value ? "True" : "False";
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((v) => inner + python(v, inner)).join(",\n")},\n${indent}]`;
  }
  if (typeof value === "object") {
    const items = Object.entries(value).map(([k, v]) => `${inner}${JSON.stringify(k)}: ${python(v, inner)}`);
    return items.length ? `{\n${items.join(",\n")},\n${indent}}` : "{}";
  }
  return JSON.stringify(value);
}

function showSnippets() {
  let body;
  try {
    body = requestBody($("prompt").value || "Hello!");
  } catch (error) {
    $("curl").textContent = $("python").textContent = error.message;
    return;
  }
  const key = gateway.key() ? ' \\\n  -H "Authorization: Bearer $GATEWAY_API_KEY"' : "";
  const data = JSON.stringify(body, null, 2).replaceAll("'", "'\\''");
  $("curl").textContent =
    `curl -N ${location.origin}/v1/chat/completions \\\n  -H "Content-Type: application/json"${key} \\\n  -d '${data}'`;
  const { stream, ...rest } = body;
  const args = Object.entries(rest).map(([k, v]) => `    ${k}=${python(v, "    ")},`);
  $("python").textContent = [
    "import os",
    "",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url="${location.origin}/v1", api_key=os.environ.get("GATEWAY_API_KEY", "none"))`,
    "stream = client.chat.completions.create(",
    ...args,
    "    stream=True,",
    ")",
    "for chunk in stream:",
    "    if chunk.choices and chunk.choices[0].delta.content:",
    '        print(chunk.choices[0].delta.content, end="", flush=True)',
  ].join("\n");
}

async function loadModel() {
  try {
    const response = await gateway.fetch("/v1/models");
    if (!response.ok) throw new Error(await gateway.error(response));
    model = (await response.json()).data[0].id;
    $("model").textContent = `model: ${model}`;
  } catch (error) {
    $("model").textContent = error.message;
  }
  showSnippets();
}

$("prompt-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = $("prompt").value.trim();
  if (!prompt || controller) return;
  $("prompt").value = "";
  send(prompt);
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.ctrlKey) $("prompt-form").requestSubmit();
});
$("stop-button").addEventListener("click", () => controller && controller.abort());
$("clear").addEventListener("click", () => {
  conversation.length = 0;
  $("log").replaceChildren();
  showSnippets();
});
$("format").addEventListener("change", () => {
  $("schema-label").hidden = $("format").value !== "json_schema";
});
$("settings").addEventListener("input", showSnippets);
$("prompt").addEventListener("input", showSnippets);
loadModel();
