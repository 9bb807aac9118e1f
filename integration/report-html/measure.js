// Appended to a copy of the report by run.sh (the report itself has no
// script): measures every chart as Chromium rendered it and writes the
// numbers into the page, for --dump-dom.
(function () {
  var out = {};
  var charts = document.querySelectorAll("svg.chart");
  for (var i = 0; i < charts.length; i++) {
    var svg = charts[i];
    var box = svg.getBoundingClientRect();
    var marks = 0;
    var shapes = svg.querySelectorAll("rect, polyline, circle");
    for (var j = 0; j < shapes.length; j++) {
      var b = shapes[j].getBoundingClientRect();
      if (b.width > 0 && b.height > 0) marks++;
    }
    out[svg.id] = { width: box.width, height: box.height, marks: marks };
  }
  var pre = document.createElement("pre");
  pre.id = "measure";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
