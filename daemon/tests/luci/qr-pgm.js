// usage: node qr-pgm.js MODULE TEXT OUT.pgm
var fs = require('fs');
var src = fs.readFileSync(process.argv[2], 'utf8');
var baseclass = { extend: function(p) { var C = function() {}; C.prototype = p; return C; } };
var Cls = new Function('baseclass', src)(baseclass);
var qr = new Cls();
var rows = qr.matrix(process.argv[3]), scale = 4, q = 4, n = (rows.length + 2 * q) * scale;
var px = Buffer.alloc(n * n, 255);
rows.forEach(function(row, y) { row.forEach(function(d, x) {
  if (!d) return;
  for (var dy = 0; dy < scale; dy++) for (var dx = 0; dx < scale; dx++)
    px[((y + q) * scale + dy) * n + (x + q) * scale + dx] = 0;
}); });
fs.writeFileSync(process.argv[4], Buffer.concat([Buffer.from('P5\n' + n + ' ' + n + '\n255\n'), px]));
console.log(rows.length);
