(function () {
  "use strict";
  var buttons = document.querySelectorAll(".actions button");
  function disable() { buttons.forEach(function (b) { b.disabled = true; }); }
  document.querySelectorAll("form.act").forEach(function (form) {
    form.addEventListener("submit", function () { setTimeout(disable, 0); });
  });
  var el = document.getElementById("countdown");
  if (!el) { return; }
  var remaining = Number(el.getAttribute("data-remaining"));
  var started = performance.now();
  function two(n) { return n < 10 ? "0" + n : String(n); }
  function tick() {
    var elapsed = (performance.now() - started) / 1000;
    var left = Math.max(0, Math.ceil(remaining - elapsed));
    if (left <= 0) {
      el.textContent = "expired";
      disable();
      var hint = document.getElementById("expired-hint");
      if (hint) { hint.hidden = false; }
      return;
    }
    var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    el.textContent = (h ? h + ":" + two(m) : String(m)) + ":" + two(s) + " left";
    setTimeout(tick, 1000 - ((elapsed * 1000) % 1000));
  }
  tick();
})();
