// Casemate chat page: no external resource, no HTML injection (text only, via textContent).
"use strict";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("casemate-token");
// the current conversation: earlier turns go back to the server, which links the new answer to the
// previous one (conversation_id) and keeps the label at least as high
let conversation = null;
let turns = [];

function showLabel(code, display) {
  const el = $("label");
  el.textContent = display ? display + " (" + code + ")" : code;
  el.className = "label " + String(code).split("//")[0];
}

function showCitations(citations) {
  const list = $("citations");
  list.replaceChildren();
  for (const c of citations || []) {
    const li = document.createElement("li");
    li.className = "citation";
    li.dataset.version = c.version_id;
    const head = document.createElement("span");
    head.textContent = "[" + c.n + "] " + c.name + " — " + c.anchor_text + " [" + c.label + "] (version " +
      c.version_id + ", asset " + c.asset_id + ")";
    const snip = document.createElement("span");
    snip.className = "snippet";
    snip.textContent = c.snippet;
    li.append(head, snip);
    list.append(li);
  }
}

async function enterChat() {
  const r = await fetch("/api/me", { headers: { Authorization: "Bearer " + token } });
  if (!r.ok) { sessionStorage.removeItem("casemate-token"); token = null; return; }
  const me = await r.json();
  $("who").textContent = me.user + " — " + me.clearance_display;
  $("login").hidden = true;
  $("chat").hidden = false;
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  const r = await fetch("/api/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("username").value, password: $("password").value }),
  });
  const data = await r.json();
  if (!r.ok) { $("login-error").textContent = data.error ? data.error.message : "échec"; return; }
  token = data.token;
  sessionStorage.setItem("casemate-token", token);
  await enterChat();
});

$("ask").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  $("answer").textContent = "";
  $("chat-error").textContent = "";
  $("send").disabled = true;
  document.body.dataset.state = "streaming";
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
      body: JSON.stringify({ model: "casemate-assistant", stream: true,
                             messages: turns.concat([{ role: "user", content: question }]),
                             ...(conversation ? { conversation_id: conversation } : {}) }),
    });
    if (!r.ok) {
      const data = await r.json();
      $("chat-error").textContent = data.error ? data.error.message : "erreur " + r.status;
      return;
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, cut).trim();
        buf = buf.slice(cut + 2);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const obj = JSON.parse(data);
        if (obj.error) { $("chat-error").textContent = obj.error.message; continue; }
        if (obj.label) showLabel(obj.label, obj.label_display);
        if (obj.citations) showCitations(obj.citations);
        const delta = obj.choices && obj.choices[0] && obj.choices[0].delta;
        if (delta && delta.content) $("answer").textContent += delta.content;
        // the last chunk carries the checked answer (unknown [n] dropped, unsupported text withdrawn)
        if (typeof obj.answer === "string") $("answer").textContent = obj.answer;
        if (obj.conversation_id) {
          conversation = obj.conversation_id;
          document.body.dataset.conversation = conversation;
        }
      }
    }
    turns = turns.concat([{ role: "user", content: question },
                          { role: "assistant", content: $("answer").textContent }]).slice(-8);
    $("question").value = "";
  } catch (e) {
    $("chat-error").textContent = String(e);
  } finally {
    $("send").disabled = false;
    document.body.dataset.state = "done";
  }
});

$("new-conversation").addEventListener("click", () => {
  conversation = null;
  turns = [];
  delete document.body.dataset.conversation;
  $("answer").textContent = "";
  $("citations").replaceChildren();
  showLabel("—", "");
});

if (token) enterChat();
