// The chat page: pick a name, join or create a room, talk. Plain DOM, no build step.
// User text only ever goes into the page through textContent, never innerHTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const NAME_KEY = "dotwist-chat-name";
  const FIRST_RETRY_MS = 500;
  const MAX_RETRY_MS = 4000;
  const PING = '{"type":"ping"}';

  let name = "";
  let room = "";
  let ws = null;
  let welcomed = false;       // has this page been in the room before (then a welcome is a return)
  let leaving = false;
  let retryMs = FIRST_RETRY_MS;
  let retryTimer = null;
  let pingTimer = null;
  let rateUntil = 0;
  let rateTimer = null;

  function setStatus(state, text) {
    const status = $("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  function isPrivate(roomName) {
    return /^[0-9a-f]{64}$/.test(roomName);
  }

  function roomLabel(roomName) {
    return isPrivate(roomName) ? "private room " + roomName.slice(0, 8) + "…" : "#" + roomName;
  }

  // -- joining ------------------------------------------------------------------------------

  function showJoin(error) {
    $("chat").hidden = true;
    $("join").hidden = false;
    $("room-title").textContent = "";
    $("join-error").textContent = error || "";
    setStatus("idle", "");
    $("name").focus();
  }

  function startChat(roomName) {
    room = roomName;
    leaving = false;
    welcomed = false;
    history.replaceState(null, "", "#" + encodeURIComponent(room));
    $("join").hidden = true;
    $("chat").hidden = false;
    $("room-title").textContent = roomLabel(room);
    document.title = roomLabel(room) + " · dotwist chat";
    $("log").replaceChildren();
    $("members").replaceChildren();
    setNotice("", "");
    connect();
  }

  function readName() {
    const value = $("name").value.trim();
    if (!value) {
      $("join-error").textContent = "Pick a name to join the room.";
      return false;
    }
    name = value;
    localStorage.setItem(NAME_KEY, name);
    return true;
  }

  $("join").addEventListener("submit", (event) => {
    event.preventDefault();
    if (readName()) {
      startChat($("room").value.trim() || "lobby");
    }
  });

  $("private-button").addEventListener("click", async () => {
    if (!readName()) {
      return;
    }
    try {
      const response = await fetch("/api/room", { method: "POST" });
      const answer = await response.json();
      if (!response.ok) {
        throw new Error(answer.error || response.statusText);
      }
      startChat(answer.id);
    } catch (error) {
      $("join-error").textContent = "Could not make a private room: " + error.message;
    }
  });

  $("leave-button").addEventListener("click", () => {
    leaving = true;
    clearTimeout(retryTimer);
    if (ws) {
      ws.close(1000, "left");
    }
    history.replaceState(null, "", location.pathname);
    showJoin("");
  });

  // -- the connection -----------------------------------------------------------------------

  function connect() {
    clearTimeout(retryTimer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = scheme + "//" + location.host + "/api/room/" + encodeURIComponent(room) +
      "/websocket?name=" + encodeURIComponent(name);
    if (!welcomed) {
      setStatus("connecting", "connecting…");
    }
    const socket = new WebSocket(url);
    ws = socket;
    socket.addEventListener("message", (event) => {
      if (socket === ws) {
        receive(JSON.parse(event.data));
      }
    });
    socket.addEventListener("close", (event) => {
      if (socket !== ws) {
        return;
      }
      clearInterval(pingTimer);
      $("send-button").disabled = true;
      if (leaving) {
        return;
      }
      if (event.code === 4400) {  // refused at the door: the error message came first
        showJoin(event.reason || "The room refused this name.");
        return;
      }
      const seconds = Math.max(1, Math.round(retryMs / 1000));
      setStatus("reconnecting", "offline, reconnecting in " + seconds + " s…");
      retryTimer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
    });
  }

  function receive(message) {
    switch (message.type) {
      case "welcome":
        retryMs = FIRST_RETRY_MS;
        setStatus("connected", "connected as " + message.name);
        $("log").replaceChildren();
        message.history.forEach(showMessage);
        if (welcomed) {
          showNotice("You are back in the room.");
        }
        welcomed = true;
        showMembers(message.members);
        $("send-button").disabled = Date.now() < rateUntil;
        clearInterval(pingTimer);
        pingTimer = setInterval(() => ws && ws.readyState === WebSocket.OPEN && ws.send(PING), 25000);
        $("text").focus();
        break;
      case "message":
        showMessage(message);
        break;
      case "join":
        showNotice(message.name + " joined");
        showMembers(message.members);
        break;
      case "leave":
        showNotice(message.name + " left");
        showMembers(message.members);
        break;
      case "error":
        showError(message);
        break;
      default:
        break;  // "pong", and anything newer than this page
    }
  }

  // -- showing ------------------------------------------------------------------------------

  function atBottom(log) {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  function append(item) {
    const log = $("log");
    const follow = atBottom(log);
    log.append(item);
    if (follow) {
      log.scrollTop = log.scrollHeight;
    }
  }

  function showMessage(message) {
    const item = document.createElement("li");
    item.className = message.name === name ? "message mine" : "message";
    item.dataset.id = String(message.id);
    const meta = document.createElement("div");
    meta.className = "meta";
    const who = document.createElement("span");
    who.className = "name";
    who.textContent = message.name;
    const when = document.createElement("time");
    const at = new Date(message.at);
    when.dateTime = at.toISOString();
    when.textContent = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    meta.append(who, when);
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = message.text;
    item.append(meta, text);
    append(item);
  }

  function showNotice(text) {
    const item = document.createElement("li");
    item.className = "notice";
    item.textContent = text;
    append(item);
  }

  function showMembers(members) {
    const list = $("members");
    list.replaceChildren(...members.map((member) => {
      const item = document.createElement("li");
      item.textContent = member;
      if (member === name) {
        item.className = "me";
      }
      return item;
    }));
    $("member-count").textContent = "(" + members.length + ")";
  }

  function setNotice(kind, text) {
    const notice = $("notice");
    notice.dataset.kind = kind;
    notice.className = kind ? "warning" : "";
    notice.textContent = text;
  }

  function showError(error) {
    if (error.code === "rate-limited") {
      rateUntil = Date.now() + error.retryAfterMs;
      if (!$("text").value) {
        $("text").value = error.text;  // the refused message was not sent: give it back
      }
      tickRateLimit();
    } else if (error.code === "try-again") {
      if (!$("text").value) {
        $("text").value = error.text;
      }
      setNotice("error", error.message);
    } else if (error.code.startsWith("name-")) {
      $("join-error").textContent = error.message;
    } else {
      setNotice("error", error.message);
    }
  }

  function tickRateLimit() {
    clearTimeout(rateTimer);
    const left = rateUntil - Date.now();
    if (left <= 0) {
      setNotice("", "You can send again.");
      $("send-button").disabled = !(ws && ws.readyState === WebSocket.OPEN);
      return;
    }
    $("send-button").disabled = true;
    setNotice("rate-limited", "Slow down: you may send again in " + Math.ceil(left / 1000) + " s.");
    rateTimer = setTimeout(tickRateLimit, Math.min(left, 250));
  }

  // -- sending ------------------------------------------------------------------------------

  $("send").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("text");
    const text = input.value;
    if (!text.trim() || !ws || ws.readyState !== WebSocket.OPEN || Date.now() < rateUntil) {
      return;
    }
    ws.send(JSON.stringify({ type: "message", text: text }));
    input.value = "";
    if ($("notice").dataset.kind === "error") {
      setNotice("", "");
    }
  });

  // -- start --------------------------------------------------------------------------------

  $("name").value = localStorage.getItem(NAME_KEY) || "";
  $("room").value = decodeURIComponent(location.hash.slice(1)) || "lobby";
})();
