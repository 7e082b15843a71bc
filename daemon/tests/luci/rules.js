// usage: node rules.js VIEW RULES
// Compiles the LuCI view as LuCI would (its source as a function body, the
// required modules passed in) and runs the form's own checks on every case
// of RULES (tests/openwrt/rules.txt): prints "KIND VERDICT VALUE" with the
// verdict the form gives, one a line, for the test to compare.
'use strict';
var fs = require('fs');
var source = fs.readFileSync(process.argv[2], 'utf8');
var names = [], modules = [];
source.replace(/^'require ([a-z.]+)(?: as ([a-z]+))?';$/mg, function(m, name, alias) {
	names.push(alias || name);
	modules.push({ extend: function(p) { return p }, declare: function() { return function() {} } });
});
global._ = function(s) { return s };
global.E = function() { return {} };
global.L = {};
var view = new Function(names.join(','), source).apply(null, modules);
var check = { listen: view.checkListen, data_dir: view.checkDataDir };
fs.readFileSync(process.argv[3], 'utf8').split('\n').forEach(function(line) {
	var m = /^(\S+) (\S+) (.*)$/.exec(line);
	if (!m || line.charAt(0) == '#')
		return;
	console.log(m[1] + ' ' + (check[m[1]](m[3]) === true ? 'ok' : 'bad') + ' ' + m[3]);
});
