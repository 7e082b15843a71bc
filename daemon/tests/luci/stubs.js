// Stand-ins for the LuCI modules the qpc view requires, so that the view
// renders in a plain browser page: `E`, `_`, `L`, String.prototype.format
// (LuCI's %s %d %t %m), and the modules view, dom, poll, rpc, uci, ui, fs,
// baseclass and form, reduced to what a page needs. The view and its own
// modules are loaded unchanged, the way LuCI loads them: a source becomes
// the body of a function that receives the required modules, and a
// required class is instantiated.
//
// As in LuCI, the view draws Save & Apply, Save and Reset; Save parses
// every option of the form (datatype and validate, as LuCI's validation
// does for the types the view uses), refuses the whole form when one is
// invalid, else writes what changed with uci.set/uci.unset and calls
// uci.save; Save & Apply then calls ui.changes.apply. Every uci call is
// recorded in window.UCI_CALLS.
//
// Expects globals: QPC_FIXTURE = { rpc: { 'qpc.status': {...}, ... },
// uci: { qpc: { server: { option: value | [values] } } },
// modules: { 'qpc.qrcode': source }, drive: [ steps ] (optional) }.
'use strict';

function E(tag, attrs, children) {
	if (Array.isArray(attrs) || typeof attrs === 'string' || attrs instanceof Node) {
		children = attrs;
		attrs = null;
	}
	var node = Array.isArray(tag) ? document.createDocumentFragment() : document.createElement(tag);
	for (var key in (attrs || {})) {
		var value = attrs[key];
		if (value == null)
			continue;
		if (typeof value === 'function')
			node.addEventListener(key, value);
		else
			node.setAttribute(key, value);
	}
	append(node, children);
	return node;
}

function append(node, children) {
	if (children == null)
		return;
	if (Array.isArray(children))
		children.forEach(function(c) { append(node, c) });
	else if (children instanceof Node)
		node.appendChild(children);
	else
		node.appendChild(document.createTextNode(String(children)));
}

function _(s) { return s }

// LuCI's String.prototype.format for the conversions views use: %s, %d,
// %%, %t (seconds as "1d 2h 3m 4s") and %[BASE][.PRECISION]m (a size with
// K/M/G prefixes, binary when BASE is 1024).
String.prototype.format = function() {
	var args = arguments, n = 0;
	return this.replace(/%(\d+)?(\.\d+)?([sdtm%])/g, function(all, width, prec, type) {
		if (type == '%')
			return '%';
		var v = args[n++];
		switch (type) {
		case 's': return String(v);
		case 'd': return Math.floor(+v || 0).toFixed(0);
		case 't':
			var ts = +v || 0, tm = Math.floor(ts / 60), th = Math.floor(tm / 60), td = Math.floor(th / 24);
			ts %= 60; tm %= 60;
			return td > 0 ? td + 'd ' + (th % 24) + 'h ' + tm + 'm ' + ts + 's' : th + 'h ' + tm + 'm ' + ts + 's';
		case 'm':
			var base = width ? +width : 1000, digits = prec ? Math.floor(10 * +('0' + prec)) : 2;
			var units = [ ' ', ' K', ' M', ' G', ' T', ' P', ' E' ], i = 0, val = +v || 0;
			for (; i < units.length && val > base; i++)
				val /= base;
			return i ? val.toFixed(digits) + units[i] + (base == 1024 ? 'i' : '') : val + ' ';
		}
	});
};

var L = {
	bind: function(fn, ctx) { return fn.bind(ctx) },
	resolveDefault: function(p, d) { return Promise.resolve(p).catch(function() { return d }) }
};

var rpcCalls = [];
var stubs = {
	view: {
		extend: function(proto) {
			// LuCI's view: the footer's buttons save every map on the page.
			var maps = [];
			proto.handleSave = proto.handleSave || function() {
				return Promise.all(maps.map(function(m) { return m.save() }));
			};
			proto.handleSaveApply = proto.handleSaveApply || function() {
				var self = this;
				return this.handleSave().then(function() { return stubs.ui.changes.apply() });
			};
			proto.handleReset = proto.handleReset || function() { return Promise.resolve() };
			proto.addFooter = function() {
				var self = this, act = function(fn) {
					return function() {
						return fn.call(self).catch(function(e) {
							stubs.ui.addNotification(null, E('p', {}, e.message), 'error');
						});
					};
				};
				return E('div', { 'class': 'cbi-page-actions' }, [
					E('button', { 'class': 'cbi-button cbi-button-apply', click: act(this.handleSaveApply) }, 'Save & Apply'), ' ',
					E('button', { 'class': 'cbi-button cbi-button-save', click: act(this.handleSave) }, 'Save'), ' ',
					E('button', { 'class': 'cbi-button cbi-button-reset', click: act(this.handleReset) }, 'Reset')
				]);
			};
			proto.maps = maps;
			return proto;
		}
	},
	baseclass: {
		extend: function(proto) {
			var C = function() {};
			C.prototype = proto;
			return C;
		}
	},
	fs: {
		read_direct: function(path, type) {
			rpcCalls.push('fs.read_direct ' + path);
			return Promise.resolve(new Blob([ 'backup of ' + path ]));
		}
	},
	dom: {
		content: function(node, children) {
			while (node.firstChild)
				node.removeChild(node.firstChild);
			append(node, children);
		}
	},
	poll: {
		added: [],
		add: function(fn, interval) {
			this.added.push(interval);
			// One refresh, as LuCI's poller would do after `interval` s.
			setTimeout(function() { fn().then(function() { document.body.setAttribute('data-polled', '1') }) }, 50);
		}
	},
	rpc: {
		declare: function(opts) {
			return function() {
				var name = opts.object + '.' + opts.method;
				rpcCalls.push(name);
				var reply = QPC_FIXTURE.rpc[name];
				if (reply === undefined)
					return Promise.reject(new Error('no fixture for ' + name));
				var expect = opts.expect || {};
				var key = Object.keys(expect)[0];
				// As LuCI: expect { '': x } is the whole reply, { key: x } its
				// member `key`, with x when it is missing.
				if (key === undefined || key === '')
					return Promise.resolve(reply);
				return Promise.resolve(reply[key] !== undefined ? reply[key] : expect[key]);
			};
		}
	},
	uci: {
		load: function() { return Promise.resolve() },
		get: function(config, section, option) {
			var s = (QPC_FIXTURE.uci[config] || {})[section] || {};
			return option ? s[option] : s;
		},
		set: function(config, section, option, value) {
			UCI_CALLS.push([ 'set', config, section, option, value ]);
			QPC_FIXTURE.uci[config][section][option] = value;
		},
		unset: function(config, section, option) {
			UCI_CALLS.push([ 'unset', config, section, option ]);
			delete QPC_FIXTURE.uci[config][section][option];
		},
		save: function() {
			UCI_CALLS.push([ 'save' ]);
			return Promise.resolve();
		},
		apply: function() {
			UCI_CALLS.push([ 'apply' ]);
			return Promise.resolve();
		}
	},
	ui: {
		addNotification: function(title, children, kind) {
			var box = E('div', { 'class': 'alert-message ' + (kind || '') }, children);
			document.getElementById('notifications').appendChild(box);
		},
		createHandlerFn: function(ctx, fn) {
			return function(ev) { return fn.call(ctx, ev) };
		},
		uploadFile: function(path) {
			rpcCalls.push('ui.uploadFile ' + path);
			return Promise.resolve({ name: path, size: 1 });
		},
		changes: {
			apply: function() { return stubs.uci.apply() }
		}
	}
};

var UCI_CALLS = [];

// LuCI's datatypes, for the expressions the view uses.
function splitArgs(s) {
	var args = [], depth = 0, cur = '';
	for (var i = 0; i < s.length; i++) {
		var c = s.charAt(i);
		if (c == '(') depth++;
		if (c == ')') depth--;
		if (c == ',' && depth == 0) { args.push(cur); cur = ''; continue }
		cur += c;
	}
	args.push(cur);
	return args;
}
function checkType(expr, value) {
	var m = /^([a-z0-9]+)(?:\((.*)\))?$/.exec(expr), args = m[2] != null ? splitArgs(m[2]) : [];
	switch (m[1]) {
	case 'and': return args.every(function(a) { return checkType(a, value) });
	case 'or': return args.some(function(a) { return checkType(a, value) });
	case 'uinteger': return /^[0-9]+$/.test(value);
	case 'range': return !isNaN(parseFloat(value)) && +value >= +args[0] && +value <= +args[1];
	case 'host': return /^[A-Za-z0-9_.-]+$/.test(value) || /^[0-9A-Fa-f:.]+$/.test(value);
	}
	throw new Error('datatype ' + expr + ' has no stand-in');
}

// form: a Map of NamedSections with tabs and options, rendered with the
// markup and classes of LuCI's cbi forms and filled from the uci stub.
function Option(kind, name, title, description) {
	this.kind = kind;
	this.name = name;
	this.title = title;
	this.description = description;
	this.values = [];
	this.deps = [];
}
Option.prototype.value = function(v, label) { this.values.push([ v, label || v ]) };
// As LuCI's AbstractValue.parse: validate the widget's value, then write
// it to uci when it changed (an empty value is unset).
Option.prototype.isValid = function(section_id) {
	var self = this, values = [].concat(this.formvalue());
	for (var i = 0; i < values.length; i++) {
		var v = values[i];
		if (v === '' || v == null)
			continue;
		if (this.datatype && !checkType(this.datatype, v))
			return _('Expecting: %s').format(this.datatype);
		if (this.validate) {
			var r = this.validate(section_id, v);
			if (r !== true)
				return r;
		}
	}
	return true;
};
Option.prototype.parse = function(section_id, current) {
	var value = this.formvalue(), same;
	if (this.kind == 'Button')
		return;
	var empty = Array.isArray(value) ? !value.length : value === '';
	same = JSON.stringify(value) == JSON.stringify(current == null ? (Array.isArray(value) ? [] : '') : current);
	if (same)
		return;
	if (empty && this.rmempty !== false)
		stubs.uci.unset(this.section.map.config, section_id, this.name);
	else
		stubs.uci.set(this.section.map.config, section_id, this.name, value);
};
Option.prototype.depends = function(o, v) { this.deps.push([ o, v ]) };

function Section(map, type, name, title) {
	this.map = map;
	this.name = name;
	this.title = title;
	this.tabs = [];
	this.options = [];
}
Section.prototype.tab = function(name, title) { this.tabs.push([ name, title ]) };
Section.prototype.taboption = function(tab, kind, name, title, description) {
	var o = new Option(kind, name, title, description);
	o.tab = tab;
	o.section = this;
	this.options.push(o);
	return o;
};
Section.prototype.option = function(kind, name, title, description) {
	return this.taboption(null, kind, name, title, description);
};

// The widget of an option, with LuCI's markup; o.formvalue() reads it back.
function renderField(o, value) {
	switch (o.kind) {
	case 'Flag':
		var box = E('input', { type: 'checkbox', 'class': 'cbi-input-checkbox' });
		box.checked = value === '1';
		o.formvalue = function() { return box.checked ? '1' : '0' };
		return box;
	case 'ListValue':
		var select = E('select', { 'class': 'cbi-input-select' },
			o.values.map(function(v) { return E('option', { value: v[0] }, v[1]) }));
		select.value = value != null ? value : o.default;
		o.formvalue = function() { return select.value };
		return select;
	case 'DynamicList':
		var items = [].concat(value || []), list = E('div', { 'class': 'cbi-dynlist' });
		var draw = function() {
			stubs.dom.content(list, items.map(function(v, i) {
				return E('div', { 'class': 'item' }, [ E('span', {}, v), E('span', { 'class': 'remove', click: function() { items.splice(i, 1); draw() } }, '×') ]);
			}).concat([ E('input', { type: 'text', 'class': 'cbi-input-text', placeholder: o.placeholder || '' }) ]));
		};
		draw();
		o.formvalue = function() { return items.slice() };
		o.setFormvalue = function(v) { items = [].concat(v); draw() };
		return list;
	case 'Button':
		o.formvalue = function() { return null };
		return E('button', { 'class': 'cbi-button cbi-button-' + (o.inputstyle || 'button'), click: o.onclick }, o.inputtitle || o.title);
	default:
		var input = E('input', {
			type: o.password ? 'password' : 'text',
			'class': 'cbi-input-text',
			value: value != null ? value : '',
			placeholder: o.placeholder || ''
		});
		o.formvalue = function() { return input.value };
		o.setFormvalue = function(v) { input.value = v };
		return input;
	}
}

function visible(o, values) {
	return !o.deps.length || o.deps.some(function(d) { return values[d[0]] === d[1] });
}

function FormMap(config, title, description) {
	this.config = config;
	this.title = title;
	this.description = description;
	this.sections = [];
}
FormMap.prototype.section = function(kind, name, type, title) {
	var s = new Section(this, type, name, title);
	this.sections.push(s);
	return s;
};
FormMap.prototype.lookupOption = function(name) {
	for (var i = 0; i < this.sections.length; i++)
		for (var j = 0; j < this.sections[i].options.length; j++)
			if (this.sections[i].options[j].name == name)
				return this.sections[i].options[j];
	return null;
};
// As LuCI's Map.save: every shown option valid, or nothing is written.
FormMap.prototype.save = function() {
	var map = this, bad = [];
	map.sections.forEach(function(s) {
		s.options.forEach(function(o) {
			if (!o.formvalue)
				return;
			var r = o.isValid(s.name);
			var field = document.querySelector('#cbi-' + map.config + ' [data-name="' + o.name + '"]');
			if (field)
				field.classList.toggle('cbi-value-error', r !== true);
			if (r !== true)
				bad.push(o.title + ': ' + r);
		});
	});
	if (bad.length)
		return Promise.reject(new Error(_('Some fields are invalid, cannot save values!') + ' ' + bad.join('; ')));
	map.sections.forEach(function(s) {
		var current = stubs.uci.get(map.config, s.name) || {};
		s.options.forEach(function(o) {
			if (o.formvalue)
				o.parse(s.name, current[o.name]);
		});
	});
	return stubs.uci.save();
};
FormMap.prototype.render = function() {
	var map = this;
	currentView.maps.push(map);
	return Promise.resolve(E('div', { 'class': 'cbi-map', id: 'cbi-' + map.config }, [
		E('h2', {}, map.title),
		E('div', { 'class': 'cbi-map-descr' }, map.description)
	].concat(map.sections.map(function(s) {
		var values = stubs.uci.get(map.config, s.name) || {};
		var tabs = s.tabs.length ? s.tabs : [ [ null, '' ] ];
		return E('div', { 'class': 'cbi-section' }, [
			s.title ? E('h3', {}, s.title) : '',
			s.tabs.length ? E('ul', { 'class': 'cbi-tabmenu' }, s.tabs.map(function(t, i) {
				return E('li', { 'class': i ? 'cbi-tab-disabled' : 'cbi-tab' }, E('a', {}, t[1]));
			})) : ''
		].concat(tabs.map(function(t, i) {
			return E('div', { 'class': 'cbi-tab-pane', 'data-tab': t[0] || '' }, [
				s.tabs.length ? E('h4', { 'class': 'tab-title' }, t[1]) : ''
			].concat(s.options.filter(function(o) { return o.tab === t[0] && visible(o, values) }).map(function(o) {
				return E('div', { 'class': 'cbi-value', 'data-name': o.name }, [
					E('label', { 'class': 'cbi-value-title' }, o.title),
					E('div', { 'class': 'cbi-value-field' }, [
						renderField(o, values[o.name]),
						o.description ? E('div', { 'class': 'cbi-value-description' }, o.description) : ''
					])
				]);
			})));
		})));
	}))));
};

stubs.form = {
	Map: FormMap,
	NamedSection: 'NamedSection',
	Flag: 'Flag', Value: 'Value', ListValue: 'ListValue', DynamicList: 'DynamicList', Button: 'Button'
};

var currentView = null;

// Compiles a LuCI source with its 'require NAME' and 'require NAME as
// ALIAS' lines: the value returned, with the required modules passed in.
function compile(source) {
	var names = [], modules = [];
	source.replace(/^'require ([a-z.]+)(?: as ([a-z]+))?';$/mg, function(m, name, alias) {
		var module = stubs[name];
		if (!module && QPC_FIXTURE.modules && QPC_FIXTURE.modules[name]) {
			var cls = compile(QPC_FIXTURE.modules[name]);
			module = stubs[name] = new cls();
		}
		if (!module)
			throw new Error('the view requires ' + name + ', which has no stand-in');
		names.push(alias || name);
		modules.push(module);
	});
	return new Function(names.join(','), source).apply(null, modules);
}

// Steps a test drives the page through, like a person: { set: { option:
// value } } types into fields, { click: 'save' | 'apply' } presses a
// footer button and waits for it. Then the uci calls go into #uci-calls.
function drive(steps) {
	var map = currentView.maps[0];
	return steps.reduce(function(p, step) {
		return p.then(function() {
			if (step.set)
				Object.keys(step.set).forEach(function(name) { map.lookupOption(name).setFormvalue(step.set[name]) });
			if (step.click) {
				var button = document.querySelector('.cbi-page-actions .cbi-button-' + (step.click == 'save' ? 'save' : 'apply'));
				UCI_CALLS.push([ 'click', step.click ]);
				return button.click();
			}
		}).then(function() { return new Promise(function(r) { setTimeout(r, 20) }) });
	}, Promise.resolve()).then(function() {
		document.body.appendChild(E('pre', { id: 'uci-calls' }, JSON.stringify(UCI_CALLS)));
		document.body.setAttribute('data-driven', '1');
	});
}

// Loads the view the way LuCI does and renders it into #view, with the
// footer LuCI's view class adds.
function loadView(source) {
	var view = currentView = compile(source);
	return Promise.resolve(view.load()).then(function(data) {
		return view.render(data);
	}).then(function(node) {
		document.getElementById('view').appendChild(node);
		document.getElementById('view').appendChild(view.addFooter());
		document.body.setAttribute('data-rendered', '1');
		if (QPC_FIXTURE.drive)
			return drive(QPC_FIXTURE.drive);
	}).catch(function(e) {
		document.getElementById('view').appendChild(E('pre', { 'class': 'alert-message error' }, 'view failed: ' + e.stack));
		document.body.setAttribute('data-rendered', 'error');
	});
}
