/* Deep-zoom viewers built by templates/_viewer.html: reads each container's data-viewer
   JSON, opens the source in OpenSeadragon, lays the probability overlay and the refer marks
   over it, wires the overlay switch, opacity slider, "whole view" button and region links. */
(function () {
  'use strict';
  window.breastdxViewers = window.breastdxViewers || {};

  // A plain image gets OpenSeadragon's own pyramid: thin outlines survive being drawn small.
  function imageSource(url) {
    return /\.dzi(\?|$)/.test(url) ? url : {type: 'image', url: url, buildPyramid: true};
  }

  function init(container) {
    var config = JSON.parse(container.dataset.viewer);
    var canvas = container.querySelector('.bdx-viewer-canvas');
    var viewer = OpenSeadragon({
      element: canvas,
      prefixUrl: config.prefixUrl,
      tileSources: imageSource(config.source),
      showNavigator: true,
      navigatorPosition: 'BOTTOM_RIGHT',
      showRotationControl: false,
      gestureSettingsMouse: {clickToZoom: false},
      maxZoomPixelRatio: 4,
      visibilityRatio: 0.5,
      minZoomImageRatio: 0.5,
      timeout: 60000,
      // OpenSeadragon asks for one tile per drawn frame by default: on a busy machine a frame
      // can take a second, and the slide filled in tile by tile.
      maxTilesPerFrame: 12
    });
    window.breastdxViewers[container.id] = viewer;
    var width = config.width;
    var bounds = config.bounds || [0, 0, config.width, config.height];
    var layers = {};

    function addLayer(name, url, opacity) {
      if (!url) { return; }
      viewer.addTiledImage({
        tileSource: imageSource(url),
        x: bounds[0] / width, y: bounds[1] / width, width: bounds[2] / width,
        opacity: opacity,
        success: function (event) { layers[name] = event.item; sync(); }
      });
    }

    var toggle = container.querySelector('.bdx-overlay-toggle');
    var slider = container.querySelector('.bdx-overlay-opacity');
    var marksToggle = container.querySelector('.bdx-marks-toggle');

    function sync() {
      var shown = !toggle || toggle.checked;
      var level = slider ? Number(slider.value) / 100 : 0.55;
      if (layers.overlay) { layers.overlay.setOpacity(shown ? level : 0); }
      if (layers.marks) { layers.marks.setOpacity(!marksToggle || marksToggle.checked ? 1 : 0); }
      if (config.overlay) { container.dataset.overlay = shown ? 'on' : 'off'; }
      if (slider) { slider.disabled = !shown; }
    }

    viewer.addOnceHandler('open', function () {
      addLayer('overlay', config.overlay, 0.55);
      addLayer('marks', config.marks, 1);
      (config.regions || []).forEach(function (region) {
        var box = document.createElement('div');
        box.className = 'bdx-region-box';
        box.textContent = String(region.rank);
        box.setAttribute('aria-hidden', 'true');
        viewer.addOverlay({
          element: box,
          location: viewer.viewport.imageToViewportRectangle(region.x, region.y, region.width,
                                                             region.height)
        });
      });
      container.dataset.ready = 'true';
    });
    viewer.addHandler('open-failed', function (event) {
      container.dataset.ready = 'failed';
      var note = document.createElement('p');
      note.className = 'text-danger small';
      note.setAttribute('role', 'alert');
      note.textContent = 'The image could not be opened: ' + (event.message || 'unknown error');
      container.appendChild(note);
    });

    if (toggle) { toggle.addEventListener('change', sync); }
    if (slider) { slider.addEventListener('input', sync); }
    if (marksToggle) { marksToggle.addEventListener('change', sync); }
    var home = container.querySelector('.bdx-home');
    if (home) { home.addEventListener('click', function () { viewer.viewport.goHome(); }); }

    container.querySelectorAll('.bdx-region').forEach(function (button) {
      button.addEventListener('click', function () {
        var region = config.regions[Number(button.dataset.index)];
        // A margin of one box around the region: the tissue around it stays in view.
        var pad = Math.max(region.width, region.height);
        viewer.viewport.fitBounds(viewer.viewport.imageToViewportRectangle(
          region.x - pad, region.y - pad, region.width + 2 * pad, region.height + 2 * pad));
        container.dataset.focusedRegion = String(region.rank);
        viewer.canvas.focus({preventScroll: true});  // the keyboard pans and zooms from there
        canvas.scrollIntoView({block: 'nearest'});
      });
    });
  }

  function start() {
    document.querySelectorAll('.bdx-viewer[data-viewer]').forEach(init);
  }
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
}());
