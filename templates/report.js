/* Control filters for the HTML report: no framework, no network. Rows are rendered by the
   server; this only toggles `hidden`, reading each row's data attributes once. */
(function () {
  "use strict";
  var form = document.getElementById("filters");
  var shown = document.getElementById("shown");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#ctls > article.ctl"));
  var data = rows.map(function (el) {
    return {
      el: el,
      status: el.getAttribute("data-status"),
      severity: el.getAttribute("data-severity"),
      fw: el.getAttribute("data-fw"),
      text: el.getAttribute("data-text")
    };
  });
  var pending = 0;
  function checked(name) {
    var out = {};
    var boxes = form.querySelectorAll("input[name=" + name + "]");
    for (var i = 0; i < boxes.length; i++) { if (boxes[i].checked) { out[boxes[i].value] = true; } }
    return out;
  }
  function apply() {
    pending = 0;
    var st = checked("status"), sv = checked("severity");
    var fw = form.elements.framework.value;
    var q = form.elements.q.value.trim().toLowerCase();
    var fwKey = " " + fw + " ";
    var n = 0;
    for (var i = 0; i < data.length; i++) {
      var d = data[i];
      var ok = !!(st[d.status] && sv[d.severity] && (!fw || d.fw.indexOf(fwKey) >= 0) && (!q || d.text.indexOf(q) >= 0));
      if (d.el.hidden === ok) { d.el.hidden = !ok; }
      if (ok) { n++; }
    }
    shown.textContent = n + " of " + data.length + " controls shown";
  }
  function schedule() {
    if (!pending) { pending = window.requestAnimationFrame(apply); }
  }
  form.addEventListener("change", schedule);
  form.addEventListener("input", schedule);
})();
