// Drag and drop onto the upload form: dropped files become the file input's files.
(function () {
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("file-input");
  const list = document.getElementById("file-list");
  if (!zone || !input) { return; }
  function show() {
    list.replaceChildren(...Array.from(input.files).map(function (f) {
      const li = document.createElement("li");
      li.textContent = f.name;
      return li;
    }));
  }
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
})();
