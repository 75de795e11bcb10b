// Drag and drop onto the upload form, a busy indicator on long work, the map viewer's zoom.
(function () {
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("file-input");
  const list = document.getElementById("file-list");
  if (zone && input) {
    const show = function () {
      list.replaceChildren(...Array.from(input.files).map(function (f) {
        const li = document.createElement("li");
        li.textContent = f.name;
        return li;
      }));
    };
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("dragover"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.remove("dragover"); });
    });
    zone.addEventListener("drop", function (e) {
      if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; show(); }
    });
    input.addEventListener("change", show);
  }
})();

// Forms that start long work: disable the button and show a spinner with the seconds waited.
(function () {
  document.querySelectorAll("form[data-busy-text]").forEach(function (form) {
    form.addEventListener("submit", function () {
      const button = form.querySelector("button[type=submit]");
      const busy = form.querySelector(".busy");
      if (button) { button.disabled = true; button.setAttribute("aria-disabled", "true"); }
      if (!busy) { return; }
      const started = Date.now();
      const text = form.getAttribute("data-busy-text");
      const draw = function () {
        const seconds = Math.round((Date.now() - started) / 1000);
        busy.innerHTML = "";
        const spin = document.createElement("span");
        spin.className = "spinner-border text-primary";
        spin.setAttribute("aria-hidden", "true");
        busy.append(spin, " " + text + " " + seconds + " s");
      };
      draw();
      setInterval(draw, 1000);
    });
  });
  // Back from a result page (bfcache): the form is usable again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-busy-text] button[type=submit]").forEach(function (b) {
      b.disabled = false; b.removeAttribute("aria-disabled");
    });
    document.querySelectorAll("form[data-busy-text] .busy").forEach(function (b) { b.innerHTML = ""; });
  });
})();

// The map viewer: zoom buttons and region links that zoom onto a region and mark it.
(function () {
  const viewer = document.getElementById("map-viewer");
  if (!viewer) { return; }
  const img = viewer.querySelector("img");
  const width = Number(viewer.dataset.width), height = Number(viewer.dataset.height);
  let zoom = 0;  // 0: fit the box; otherwise displayed pixels per image pixel
  const marker = document.createElement("div");
  marker.className = "region-marker";
  marker.hidden = true;
  viewer.appendChild(marker);
  const label = document.getElementById("zoom-level");
  function apply() {
    if (zoom === 0) {
      viewer.classList.add("fit");
      img.style.width = "";
    } else {
      viewer.classList.remove("fit");
      img.style.width = Math.round(width * zoom) + "px";
    }
    if (label) { label.textContent = zoom === 0 ? "fit" : (zoom >= 1 ? zoom.toFixed(1) : zoom.toFixed(2)) + "×"; }
  }
  function scale() { return img.clientWidth / width; }
  function setZoom(z) { zoom = Math.max(0.05, Math.min(8, z)); marker.hidden = true; apply(); }
  const buttons = { "zoom-in": function () { setZoom((zoom || scale()) * 2); },
                    "zoom-out": function () { setZoom((zoom || scale()) / 2); },
                    "zoom-fit": function () { zoom = 0; marker.hidden = true; apply(); } };
  Object.keys(buttons).forEach(function (id) {
    const b = document.getElementById(id);
    if (b) { b.addEventListener("click", buttons[id]); }
  });
  function goTo(x, y, w, h) {
    const wanted = Math.min(viewer.clientWidth / (w * 4), 8);
    setZoom(Math.max(wanted, scale()));
    const s = scale();
    marker.style.left = (x * s) + "px"; marker.style.top = (y * s) + "px";
    marker.style.width = (w * s) + "px"; marker.style.height = (h * s) + "px";
    marker.hidden = false;
    viewer.scrollLeft = x * s + (w * s) / 2 - viewer.clientWidth / 2;
    viewer.scrollTop = y * s + (h * s) / 2 - viewer.clientHeight / 2;
    viewer.focus({ preventScroll: true });
  }
  document.querySelectorAll("a.region-link").forEach(function (a) {
    a.addEventListener("click", function (e) {
      e.preventDefault();
      goTo(Number(a.dataset.x), Number(a.dataset.y), Number(a.dataset.w), Number(a.dataset.h));
      viewer.scrollIntoView({ block: "nearest" });
      history.replaceState(null, "", a.getAttribute("href"));
    });
  });
  apply();
  if (width) {
    const hash = window.location.hash.match(/^#region-(\d+)$/);
    if (hash) {
      const link = document.querySelector('a.region-link[href="#region-' + hash[1] + '"]');
      if (link) { img.complete ? link.click() : img.addEventListener("load", function () { link.click(); }); }
    }
  }
})();
