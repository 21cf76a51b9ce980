// The audio picture of one conference: a box per room (the main room, and the private room of
// a warm transfer), a circle per member in it, an arrow from each member to those who hear
// it (both heads when they hear each other), and a note for whoever hears music instead.

const SVG = "http://www.w3.org/2000/svg";
const R = 20; // member circle radius
const GAP = 24; // between rooms
const MUSIC = {
  agent_hold: "agent hold music",
  customer_hold: "customer hold music",
  wait: "wait music",
  voicemail: "voicemail message",
};

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

export function musicLabel(music) {
  return MUSIC[music] || music;
}

// Where the members of one room sit, relative to the room's top-left corner.
function layoutRoom(members) {
  const n = members.length;
  if (n <= 2) {
    const width = n === 2 ? 280 : 170;
    const spots = n === 2 ? [70, 210] : [85];
    return { width, height: 138, spots: members.map((m, i) => ({ member: m, x: spots[i], y: 66 })) };
  }
  const radius = 78 + 20 * (n - 3);
  const width = 2 * radius + 160;
  const height = 2 * radius + 150;
  const cy = 78 + radius;
  const spots = members.map((member, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / n;
    const y = cy + radius * Math.sin(angle);
    // Labels go outward: above the members of the upper half, below the others.
    return { member, x: width / 2 + radius * Math.cos(angle), y, above: y < cy - 1 };
  });
  return { width, height, spots };
}

function roomTitle(room) {
  return room === "main" ? "Main room" : "Private room · warm transfer";
}

function arrowLine(from, to, both, markerId) {
  const dx = to.x - from.x;
  const dy = to.y - from.y;
  const length = Math.hypot(dx, dy) || 1;
  const pad = R + 5;
  const ux = dx / length;
  const uy = dy / length;
  const line = el("line", {
    x1: (from.x + ux * pad).toFixed(1),
    y1: (from.y + uy * pad).toFixed(1),
    x2: (to.x - ux * pad).toFixed(1),
    y2: (to.y - uy * pad).toFixed(1),
    class: "hears",
    "marker-end": `url(#${markerId})`,
    "data-from": from.member.member_address,
    "data-to": to.member.member_address,
  });
  if (both) {
    line.setAttribute("marker-start", `url(#${markerId}-start)`);
    line.setAttribute("data-both", "true");
  }
  return line;
}

function memberNode(spot) {
  const m = spot.member;
  const group = el("g", {
    class: `member status-${m.status}`,
    "data-member": m.member_address,
    "data-status": m.status,
    "data-room": m.room,
    transform: `translate(${spot.x.toFixed(1)},${spot.y.toFixed(1)})`,
  });
  group.append(el("title", {}, `${m.member_address} (${m.role}): ${m.status.replace("_", " ")}`));
  group.append(el("circle", { r: R, class: `role-${m.role}` }));
  group.append(el("text", { class: "initial", y: 5 }, m.role === "agent" ? "A" : "C"));
  const [addressY, stateY] = spot.above ? [-R - 22, -R - 8] : [R + 16, R + 30];
  group.append(el("text", { class: "address", y: addressY }, m.member_address));
  const state = m.status === "dialing" ? (m.ringing ? "ringing" : "dialing") : m.status.replace("_", " ");
  group.append(el("text", { class: "state", y: stateY }, state));
  if (m.music) {
    const note = el("g", { class: "music", "data-music": m.music, transform: `translate(${R - 2},${-R + 2})` });
    note.append(el("circle", { r: 10 }));
    note.append(el("text", { y: 5 }, "♪"));
    note.append(el("title", {}, `hears ${musicLabel(m.music)}`));
    group.append(note);
  }
  return group;
}

function markers(markerId) {
  const defs = el("defs");
  for (const [id, orient] of [
    [markerId, "auto"],
    [`${markerId}-start`, "auto-start-reverse"],
  ]) {
    const marker = el("marker", {
      id,
      viewBox: "0 0 10 10",
      refX: 8,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      orient,
    });
    marker.append(el("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }));
    defs.append(marker);
  }
  return defs;
}

// An <svg> for the view of a conference (conference_view JSON).
export function audioPicture(view) {
  const present = view.members.filter((m) => m.status !== "left");
  const markerId = `arrow-${view.mpc_uuid}`;
  const svg = el("svg", { class: "audio", role: "img", "data-mpc-uuid": view.mpc_uuid });
  svg.append(el("title", {}, "Who hears whom"));
  svg.append(markers(markerId));
  if (!present.length) {
    svg.setAttribute("viewBox", "0 0 300 60");
    svg.setAttribute("width", 300);
    svg.setAttribute("height", 60);
    svg.append(el("text", { x: 150, y: 34, class: "nobody" }, "nobody on the line"));
    return svg;
  }
  const rooms = new Map([["main", []]]);
  for (const m of present) {
    if (!rooms.has(m.room)) rooms.set(m.room, []);
    rooms.get(m.room).push(m);
  }
  if (!rooms.get("main").length && rooms.size > 1) rooms.delete("main");
  let x = 0;
  let height = 0;
  const spots = new Map();
  const boxes = [];
  for (const [room, members] of rooms) {
    const layout = layoutRoom(members);
    boxes.push({ room, x, layout });
    for (const spot of layout.spots) spots.set(spot.member.member_address, { ...spot, x: spot.x + x });
    x += layout.width + GAP;
    height = Math.max(height, layout.height);
  }
  const width = x - GAP;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  for (const { room, x: left, layout } of boxes) {
    const box = el("g", { class: room === "main" ? "room main" : "room private", "data-room": room });
    box.append(el("rect", { x: left + 1, y: 1, width: layout.width - 2, height: height - 2, rx: 10 }));
    box.append(el("text", { x: left + 12, y: 19, class: "room-title" }, roomTitle(room)));
    svg.append(box);
  }
  // Audio flows from the speaker to the listener: an arrow speaker -> listener.
  const drawn = new Set();
  for (const listener of present) {
    for (const speaker of listener.hears) {
      const key = [speaker, listener.member_address].sort().join("|");
      if (speaker === listener.member_address || drawn.has(key) || !spots.has(speaker)) continue;
      drawn.add(key);
      const back = spots.get(speaker).member.hears.includes(listener.member_address);
      svg.append(arrowLine(spots.get(speaker), spots.get(listener.member_address), back, markerId));
    }
  }
  for (const spot of spots.values()) svg.append(memberNode(spot));
  return svg;
}
