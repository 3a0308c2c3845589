// The review page's script: decisions (POSTs with the token header), bulk decisions with a
// count first, undo, the compare modes and the keys. Text from the server is only ever set
// with textContent.
"use strict";

const token = document.querySelector('meta[name="imgindex-token"]').content;

function say(text, error) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = error ? "error" : "";
  box.hidden = false;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Imgindex-Token": token },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({ error: "no answer" }));
  if (!response.ok) {
    say(answer.error || "refused", true);
    throw new Error(answer.error);
  }
  return answer;
}

function follow(rel) {
  const a = document.querySelector(`a[rel="${rel}"]`);
  if (a) window.location.assign(a.href);
}

async function undo(batch) {
  const answer = await post("/api/undo", batch ? { batch: Number(batch) } : {});
  say("undone: " + answer.summary);
  window.location.reload();
}

// --- the overview --------------------------------------------------------------------------
function overview() {
  const bulk = document.querySelector(".bulk");
  const confirm = bulk.querySelector(".bulk-confirm");
  let pending = null;
  for (const button of bulk.querySelectorAll(".bulk-action")) {
    button.addEventListener("click", async () => {
      const action = button.dataset.action;
      const answer = await post("/api/bulk", { action, view: bulk.dataset.view, commit: false });
      pending = action;
      const what = action === "accept" ? "accept as duplicates" : "mark as not duplicates";
      bulk.querySelector(".bulk-text").textContent =
        `This will ${what} ${answer.groups.toLocaleString()} groups (${answer.images.toLocaleString()} images). It can be undone.`;
      confirm.hidden = false;
    });
  }
  bulk.querySelector(".bulk-cancel").addEventListener("click", () => {
    pending = null;
    confirm.hidden = true;
  });
  bulk.querySelector(".bulk-do").addEventListener("click", async () => {
    if (!pending) return;
    const answer = await post("/api/bulk", { action: pending, view: bulk.dataset.view, commit: true });
    say(`decided ${answer.groups.toLocaleString()} groups`);
    window.location.reload();
  });

  const rows = Array.from(document.querySelectorAll(".group"));
  let at = -1;
  function select(i) {
    if (!rows.length) return;
    if (at >= 0) rows[at].classList.remove("selected");
    at = Math.max(0, Math.min(rows.length - 1, i));
    rows[at].classList.add("selected");
    rows[at].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "j" || e.key === "ArrowDown") { select(at + 1); e.preventDefault(); }
    else if (e.key === "k" || e.key === "ArrowUp") { select(at - 1); e.preventDefault(); }
    else if (e.key === "Enter" && at >= 0) rows[at].querySelector("a.open").click();
    else if (e.key === "n" || e.key === "ArrowRight") follow("next");
    else if (e.key === "p" || e.key === "ArrowLeft") follow("prev");
    else if (e.key === "u") document.querySelector(".undo")?.click();
  });
}

// --- a group -------------------------------------------------------------------------------
function groupPage() {
  const group = Number(document.querySelector(".groupnav").dataset.group);

  async function decide(action, image) {
    const answer = await post("/api/decide", { action, group, image: image ? Number(image) : null });
    say(answer.summary);
    if (answer.group && action !== "accept") window.location.reload();
    else if (action === "accept" && document.querySelector('a[rel="next"]')) follow("next");
    else window.location.reload();
  }
  for (const button of document.querySelectorAll(".decide")) {
    button.addEventListener("click", () => decide(button.dataset.action, button.dataset.image));
  }

  // Compare the kept image with one duplicate: side by side, overlay, flicker or difference.
  const panel = document.querySelector(".compare");
  const stage = panel.querySelector(".stage");
  const top = panel.querySelector(".layer.top");
  const opacity = panel.querySelector(".opacity");
  let chosen = null;
  let timer = null;
  function mode(name) {
    clearInterval(timer);
    stage.className = "stage";
    top.className = "layer top";
    for (const b of panel.querySelectorAll("[data-compare]")) b.classList.toggle("on", b.dataset.compare === name);
    opacity.hidden = name !== "overlay";
    top.src = name === "difference" ? chosen.dataset.difference : chosen.dataset.picture;
    if (name === "side") stage.classList.add("side");
    if (name === "overlay") top.classList.add("o" + Math.round(opacity.value / 10) * 10);
    if (name === "difference") stage.classList.add("only-top");
    if (name === "flicker") timer = setInterval(() => stage.classList.toggle("hidden-top"), 500);
    panel.dataset.mode = name;
  }
  function compareWith(member) {
    for (const m of document.querySelectorAll(".member")) m.classList.toggle("chosen", m === member);
    chosen = member;
    panel.querySelector(".compare-name").textContent = member.querySelector(".path").textContent;
    panel.hidden = false;
    mode(panel.dataset.mode || "side");
    panel.scrollIntoView({ block: "nearest" });
  }
  for (const button of document.querySelectorAll(".compare-with")) {
    button.addEventListener("click", () => compareWith(button.closest(".member")));
  }
  for (const button of panel.querySelectorAll("[data-compare]")) {
    button.addEventListener("click", () => mode(button.dataset.compare));
  }
  opacity.addEventListener("input", () => mode("overlay"));
  panel.querySelector(".compare-close").addEventListener("click", () => {
    clearInterval(timer);
    panel.hidden = true;
  });

  const modes = ["side", "overlay", "flicker", "difference"];
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    const members = document.querySelectorAll(".member");
    if (e.key === "j" || e.key === "ArrowRight") follow("next");
    else if (e.key === "k" || e.key === "ArrowLeft") follow("prev");
    else if (e.key === "Escape") follow("up");
    else if (e.key === "a") document.querySelector('.groupnav .decide[data-action="accept"]')?.click();
    else if (e.key === "x") document.querySelector('.groupnav .decide[data-action="apart-group"]')?.click();
    else if (e.key === "u") document.querySelector(".undo")?.click();
    else if (/^[1-9]$/.test(e.key) && members[Number(e.key)]) compareWith(members[Number(e.key)]);
    else if (e.key === "c" && chosen) mode(modes[(modes.indexOf(panel.dataset.mode) + 1) % modes.length]);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelector(".undo")?.addEventListener("click", (e) => undo(e.target.dataset.batch));
  if (document.body.dataset.page === "overview") overview();
  if (document.body.dataset.page === "group") groupPage();
});
