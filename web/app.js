// The Switchyard demo page: a chat (/chat) and notifications (/notifications).
//
// The page opens ONE Manager, that is one Engine.IO connection, and one socket per
// namespace on it; every panel uses those two sockets. The Manager reconnects by itself
// after a lost connection, and the sockets then connect again with their auth; the chat
// joins its rooms again, since the server forgets them with the old connection.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const manager = new io.Manager(window.location.origin, {
    autoConnect: false, // nothing happens until a name or user id is given
    reconnectionDelay: 500,
    reconnectionDelayMax: 3000,
  });
  const chat = manager.socket("/chat", { auth: {} });
  const notes = manager.socket("/notifications", { auth: {} });

  // ----- helpers -------------------------------------------------------------------------

  const ACK_TIMEOUT = 5000;

  function setPill(element, state, text) {
    element.dataset.state = state;
    element.textContent = text;
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** Appends `item` to the list, dropping the placeholder and old items. */
  function append(list, item, keep = 200) {
    list.querySelector(".empty")?.remove();
    list.append(item);
    while (list.children.length > keep) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }

  /** Emits with an ack; resolves with the server's answer or throws its error message. */
  async function request(socket, event, data) {
    if (!socket.connected) throw new Error("not connected");
    let answer;
    try {
      answer = await socket.timeout(ACK_TIMEOUT).emitWithAck(event, data);
    } catch {
      throw new Error("no answer from the server");
    }
    if (answer && typeof answer.error === "string") throw new Error(answer.error);
    return answer;
  }

  function reconnect(socket, auth) {
    socket.auth = auth;
    if (socket.connected || socket.active) socket.disconnect();
    socket.connect();
  }

  // ----- the connection (Manager) --------------------------------------------------------

  const connection = $("connection");
  const transport = $("transport");

  manager.on("open", () => {
    setPill(connection, "ok", "connected");
    const engine = manager.engine;
    transport.textContent = engine.transport.name;
    engine.on("upgrade", (t) => (transport.textContent = t.name));
  });
  manager.on("close", (reason) => {
    setPill(connection, "down", `disconnected (${reason})`);
    transport.textContent = "none";
  });
  manager.on("reconnect_attempt", (attempt) => {
    setPill(connection, "wait", `reconnecting… (attempt ${attempt})`);
  });
  manager.on("reconnect", (attempts) => {
    setPill(connection, "ok", `reconnected after ${attempts} attempt${attempts === 1 ? "" : "s"}`);
  });
  manager.on("reconnect_failed", () => setPill(connection, "down", "gave up reconnecting"));

  /** Shows a namespace socket's state in `pill` and its refusals in `errorBox`. */
  function watch(socket, pill, errorBox, describe) {
    socket.on("connect", () => {
      errorBox.textContent = "";
      setPill(pill, "ok", describe());
    });
    socket.on("disconnect", (reason) => {
      setPill(pill, socket.active ? "wait" : "down", socket.active ? "waiting for the server" : "offline");
      if (reason === "io server disconnect") errorBox.textContent = "The server closed the session.";
    });
    socket.on("connect_error", (err) => {
      if (socket.active) {
        setPill(pill, "wait", "waiting for the server");
      } else {
        // Refused by the namespace's middleware: no automatic retry.
        setPill(pill, "down", "refused");
        errorBox.textContent = `Refused: ${err.message}`;
      }
    });
  }

  // ----- chat ----------------------------------------------------------------------------

  const chatStatus = $("chat-status");
  const chatError = $("chat-error");
  const chatMessages = $("chat-messages");
  const chatRooms = $("chat-rooms");
  const chatTyping = $("chat-typing");
  const chatText = $("chat-text");
  const joined = new Map(); // room -> members when joined
  let activeRoom = null;
  let myName = "";

  watch(chat, chatStatus, chatError, () => `online as ${myName}`);

  function system(text) {
    append(chatMessages, element("li", "system", text));
  }

  function renderRooms() {
    chatRooms.replaceChildren();
    for (const [room, members] of joined) {
      const item = element("li", room === activeRoom ? "active" : "");
      const select = element("button", "room", `#${room}`);
      select.type = "button";
      select.title = `${members} member${members === 1 ? "" : "s"} when joined`;
      select.addEventListener("click", () => {
        activeRoom = room;
        renderRooms();
      });
      const leave = element("button", "leave", "×");
      leave.type = "button";
      leave.title = `Leave #${room}`;
      leave.setAttribute("aria-label", `Leave ${room}`);
      leave.addEventListener("click", () => leaveRoom(room));
      item.append(select, leave);
      chatRooms.append(item);
    }
    chatText.placeholder = activeRoom ? `Message #${activeRoom}` : "Join a room first";
  }

  async function joinRoom(room) {
    const { members } = await request(chat, "join", room);
    const first = !joined.has(room);
    joined.set(room, members);
    if (first) activeRoom = room;
    renderRooms();
    system(`You joined #${room} (${members} member${members === 1 ? "" : "s"} here).`);
  }

  async function leaveRoom(room) {
    chatError.textContent = "";
    try {
      await request(chat, "leave", room);
    } catch (err) {
      if (chat.connected) chatError.textContent = err.message;
    }
    joined.delete(room);
    if (activeRoom === room) activeRoom = joined.keys().next().value ?? null;
    renderRooms();
    system(`You left #${room}.`);
  }

  chat.on("connect", () => {
    // After a reconnection the server has a new socket that is in no room yet.
    for (const room of [...joined.keys()]) {
      joinRoom(room).catch((err) => (chatError.textContent = `#${room}: ${err.message}`));
    }
  });

  chat.on("message", ({ room, sender, text, time }) => {
    const item = element("li", sender === myName ? "message mine" : "message");
    item.append(
      element("time", "", clock(time)),
      element("span", "tag", `#${room}`),
      element("b", "sender", sender),
      element("span", "text", text),
    );
    append(chatMessages, item);
    clearTyping(sender, room);
  });

  const typers = new Map(); // "room\nsender" -> timer
  function renderTyping() {
    const names = [...typers.keys()].map((key) => {
      const [room, sender] = key.split("\n");
      return `${sender} (#${room})`;
    });
    chatTyping.textContent =
      names.length === 0 ? "" : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
  }
  function clearTyping(sender, room) {
    const key = `${room}\n${sender}`;
    clearTimeout(typers.get(key));
    if (typers.delete(key)) renderTyping();
  }
  chat.on("typing", ({ room, sender }) => {
    const key = `${room}\n${sender}`;
    clearTimeout(typers.get(key));
    typers.set(key, setTimeout(() => clearTyping(sender, room), 2500));
    renderTyping();
  });

  let lastTyping = 0;
  chatText.addEventListener("input", () => {
    const now = Date.now();
    if (!activeRoom || !chat.connected || chatText.value.trim() === "" || now - lastTyping < 1000) return;
    lastTyping = now;
    chat.volatile.emit("typing", { room: activeRoom });
  });

  $("chat-login").addEventListener("submit", (event) => {
    event.preventDefault();
    chatError.textContent = "";
    myName = $("chat-name").value.trim();
    setPill(chatStatus, "wait", "connecting…");
    reconnect(chat, { name: myName });
  });

  $("chat-join").addEventListener("submit", async (event) => {
    event.preventDefault();
    chatError.textContent = "";
    const room = $("chat-room").value.trim();
    try {
      await joinRoom(room);
    } catch (err) {
      chatError.textContent = err.message;
    }
  });

  $("chat-send").addEventListener("submit", async (event) => {
    event.preventDefault();
    chatError.textContent = "";
    if (!activeRoom) {
      chatError.textContent = "Join a room first.";
      return;
    }
    const text = chatText.value;
    try {
      await request(chat, "message", { room: activeRoom, text });
      chatText.value = "";
      lastTyping = 0;
    } catch (err) {
      chatError.textContent = err.message;
    }
  });

  renderRooms();

  // ----- notifications -------------------------------------------------------------------

  const notifStatus = $("notif-status");
  const notifError = $("notif-error");
  const notifList = $("notif-list");
  const notifResult = $("notif-result");
  const notifCount = $("notif-count");
  let myUser = "";
  let received = 0;

  watch(notes, notifStatus, notifError, () => `online as ${myUser}`);

  notes.on("notification", ({ from, text, time }) => {
    const item = element("li", "note");
    item.append(element("time", "", clock(time)), element("b", "sender", from), element("span", "text", text));
    append(notifList, item);
    received += 1;
    notifCount.textContent = String(received);
    notifCount.dataset.unread = "true";
  });

  $("notif-login").addEventListener("submit", (event) => {
    event.preventDefault();
    notifError.textContent = "";
    myUser = $("notif-user").value.trim();
    setPill(notifStatus, "wait", "connecting…");
    reconnect(notes, { user: myUser });
  });

  $("notif-send").addEventListener("submit", async (event) => {
    event.preventDefault();
    notifError.textContent = "";
    notifResult.textContent = "";
    const to = $("notif-to").value.trim();
    const text = $("notif-text").value;
    try {
      const { delivered } = await request(notes, "notify", { to, text });
      notifResult.textContent = `Delivered to ${delivered} open tab${delivered === 1 ? "" : "s"} of ${to}.`;
      $("notif-text").value = "";
    } catch (err) {
      notifError.textContent = err.message;
    }
  });
})();
