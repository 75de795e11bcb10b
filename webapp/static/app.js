// Drag and drop onto the upload form; a busy indicator and a disabled button on long work.
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

// Buttons that fly a deep-zoom viewer (templates/_viewer.html) to a box: the "refer" tiles.
(function () {
  document.querySelectorAll("button.fly-to").forEach(function (button) {
    button.addEventListener("click", function () {
      const viewer = (window.breastdxViewers || {})[button.dataset.viewer];
      if (!viewer) { return; }
      const x = Number(button.dataset.x), y = Number(button.dataset.y);
      const w = Number(button.dataset.w), h = Number(button.dataset.h);
      viewer.viewport.fitBounds(viewer.viewport.imageToViewportRectangle(x - w, y - h, 3 * w, 3 * h));
      document.getElementById(button.dataset.viewer).dataset.focusedBox = x + "," + y;
      viewer.canvas.focus({ preventScroll: true });
      viewer.element.scrollIntoView({ block: "nearest" });
    });
  });
})();
