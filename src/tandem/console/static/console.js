// Tandem console: live updates (polling) and inbox keyboard shortcuts. No third-party code.
"use strict";

(function () {
  // --- live regions: <section data-live="name" data-version="..." data-poll="ms"> -----------
  // The page is fetched again; a region whose version changed is replaced, others are left
  // alone (so a half-typed form survives).
  let timer = null;

  function nextInterval() {
    let best = 0;
    document.querySelectorAll("[data-live]").forEach(function (region) {
      const ms = parseInt(region.getAttribute("data-poll") || "0", 10);
      if (ms > 0 && (best === 0 || ms < best)) best = ms;
    });
    return best;
  }

  function schedule() {
    clearTimeout(timer);
    const ms = nextInterval();
    if (ms > 0) timer = setTimeout(refresh, ms);
  }

  async function refresh() {
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin",
      });
      if (response.redirected && new URL(response.url).pathname === "/ui/login") {
        window.location.assign(response.url);
        return;
      }
      if (response.ok) {
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        fresh.querySelectorAll("[data-live]").forEach(function (region) {
          const name = region.getAttribute("data-live");
          const here = document.querySelector('[data-live="' + name + '"]');
          if (here && here.getAttribute("data-version") !== region.getAttribute("data-version")) {
            here.replaceWith(document.importNode(region, true));
            document.dispatchEvent(new CustomEvent("console:updated", { detail: name }));
          }
        });
      }
    } catch (error) {
      // Offline for a moment: try again at the next tick.
    }
    schedule();
  }

  // --- inbox keys: j / k move between items, Enter opens the focused one --------------------
  let selected = -1;

  function items() {
    return Array.from(document.querySelectorAll("[data-keys] .item-link"));
  }

  function select(index) {
    const links = items();
    if (links.length === 0) return;
    selected = Math.max(0, Math.min(index, links.length - 1));
    links.forEach(function (link, i) {
      link.parentElement.classList.toggle("selected", i === selected);
    });
    links[selected].focus();
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    if (target && target.closest && target.closest("input, textarea, select, [contenteditable]")) return;
    if (items().length === 0) return;
    if (event.key === "j") { event.preventDefault(); select(selected + 1); }
    else if (event.key === "k") { event.preventDefault(); select(selected < 0 ? 0 : selected - 1); }
    else if (event.key === "Enter" && selected >= 0 && document.activeElement === document.body) {
      items()[selected].click();
    }
  });

  document.addEventListener("console:updated", function () {
    if (selected >= 0 && items().length) select(Math.min(selected, items().length - 1));
  });

  // --- forms: "select all" for bulk actions ---------------------------------------------------
  document.addEventListener("change", function (event) {
    const box = event.target;
    if (box && box.matches && box.matches("[data-select-all]")) {
      const form = box.closest("form");
      if (form) form.querySelectorAll('input[type="checkbox"][name="job_id"]').forEach(function (c) {
        c.checked = box.checked;
      });
    }
  });

  schedule();
})();
