// Stand-ins for the LuCI modules the qpc view requires, so that the view
// renders in a plain browser page: `E`, `_`, `L`, and the modules view,
// dom, poll, rpc, uci, ui and form, reduced to what a page needs to show.
// The view itself is loaded unchanged, the way LuCI loads it: its source
// becomes the body of a function that receives the required modules.
//
// Expects globals: QPC_FIXTURE = { rpc: { 'qpc.status': {...}, ... },
// uci: { qpc: { server: { option: value | [values] } } } }.
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

var L = {
	bind: function(fn, ctx) { return fn.bind(ctx) },
	resolveDefault: function(p, d) { return Promise.resolve(p).catch(function() { return d }) }
};

var rpcCalls = [];
var stubs = {
	view: { extend: function(proto) { return proto } },
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
		}
	},
	ui: {
		addNotification: function(title, children, kind) {
			var box = E('div', { 'class': 'alert-message ' + (kind || '') }, children);
			document.getElementById('notifications').appendChild(box);
		}
	}
};

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
	this.options.push(o);
	return o;
};
Section.prototype.option = function(kind, name, title, description) {
	return this.taboption(null, kind, name, title, description);
};

function renderField(o, value) {
	switch (o.kind) {
	case 'Flag':
		var box = E('input', { type: 'checkbox', 'class': 'cbi-input-checkbox' });
		box.checked = value === '1';
		return box;
	case 'ListValue':
		var select = E('select', { 'class': 'cbi-input-select' },
			o.values.map(function(v) { return E('option', { value: v[0] }, v[1]) }));
		select.value = value != null ? value : o.default;
		return select;
	case 'DynamicList':
		return E('div', { 'class': 'cbi-dynlist' }, [].concat(value || []).map(function(v) {
			return E('div', { 'class': 'item' }, [ E('span', {}, v), E('span', { 'class': 'remove' }, '×') ]);
		}).concat([ E('input', { type: 'text', 'class': 'cbi-input-text', placeholder: o.placeholder || '' }) ]));
	case 'Button':
		return E('button', { 'class': 'cbi-button cbi-button-' + (o.inputstyle || 'button'), click: o.onclick }, o.inputtitle || o.title);
	default:
		return E('input', {
			type: o.password ? 'password' : 'text',
			'class': 'cbi-input-text',
			value: value != null ? value : '',
			placeholder: o.placeholder || ''
		});
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
FormMap.prototype.render = function() {
	var map = this;
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
	})).concat([
		E('div', { 'class': 'cbi-page-actions' }, [
			E('button', { 'class': 'cbi-button cbi-button-apply' }, 'Save & Apply'), ' ',
			E('button', { 'class': 'cbi-button cbi-button-save' }, 'Save'), ' ',
			E('button', { 'class': 'cbi-button cbi-button-reset' }, 'Reset')
		])
	])));
};

stubs.form = {
	Map: FormMap,
	NamedSection: 'NamedSection',
	Flag: 'Flag', Value: 'Value', ListValue: 'ListValue', DynamicList: 'DynamicList', Button: 'Button'
};

// Loads the view the way LuCI does and renders it into #view.
function loadView(source) {
	var names = [], modules = [];
	source.replace(/^'require ([a-z]+)';$/mg, function(m, name) {
		if (!stubs[name])
			throw new Error('the view requires ' + name + ', which has no stand-in');
		names.push(name);
		modules.push(stubs[name]);
	});
	var factory = new Function(names.join(','), source);
	var view = factory.apply(null, modules);
	return Promise.resolve(view.load()).then(function(data) {
		return view.render(data);
	}).then(function(node) {
		document.getElementById('view').appendChild(node);
		document.body.setAttribute('data-rendered', '1');
	}).catch(function(e) {
		document.getElementById('view').appendChild(E('pre', { 'class': 'alert-message error' }, 'view failed: ' + e.stack));
		document.body.setAttribute('data-rendered', 'error');
	});
}
