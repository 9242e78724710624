// The console's one script: live SLA countdowns. Every <time data-countdown datetime="…"> shows
// how long is left until its time ("2h 14m left") or since it passed ("breached 5m ago"),
// updated every 30 seconds. Without JavaScript the absolute time stays; it is also kept in the
// element's title. Progressive enhancement only: no page needs this script to work.
(function () {
  "use strict";

  function span(ms) {
    var minutes = Math.floor(Math.abs(ms) / 60000);
    var days = Math.floor(minutes / 1440);
    var hours = Math.floor((minutes % 1440) / 60);
    var rest = minutes % 60;
    var parts = [];
    if (days > 0) { parts.push(days + "d"); }
    if (days > 0 || hours > 0) { parts.push(hours + "h"); }
    parts.push(rest + "m");
    return parts.join(" ");
  }

  function tick() {
    var now = Date.now();
    var clocks = document.querySelectorAll("time[data-countdown]");
    for (var i = 0; i < clocks.length; i++) {
      var clock = clocks[i];
      var due = Date.parse(clock.getAttribute("datetime"));
      if (isNaN(due)) { continue; }
      var left = due - now;
      clock.textContent = left >= 0 ? span(left) + " left" : "breached " + span(left) + " ago";
      clock.classList.toggle("sla-breached", left < 0);
      clock.classList.toggle("sla-soon", left >= 0 && left < 3600000);
    }
  }

  function start() {
    tick();
    window.setInterval(tick, 30000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
