'use strict';
'require view';
'require dom';
'require poll';
'require rpc';
'require uci';
'require ui';
'require form';

/*
 * The qpc relay's page: whether the relay is up and how full it is
 * (refreshed while the page is open), the invite string people paste into
 * their client, the accounts, and the settings of /etc/config/qpc.
 * The figures come from the rpcd backend `qpc` (/usr/libexec/rpcd/qpc),
 * which asks the relay over its admin socket.
 */

var callStatus = rpc.declare({
	object: 'qpc',
	method: 'status',
	expect: { '': {} }
});

var callUsers = rpc.declare({
	object: 'qpc',
	method: 'users',
	expect: { users: [] }
});

var callInviteToken = rpc.declare({
	object: 'qpc',
	method: 'invite_token',
	expect: { '': {} }
});

function formatBytes(n) {
	var units = [ 'B', 'KiB', 'MiB', 'GiB' ], i = 0;

	n = +n || 0;
	while (n >= 1024 && i < units.length - 1) {
		n /= 1024;
		i++;
	}

	return (i ? n.toFixed(1) : n.toFixed(0)) + ' ' + units[i];
}

function formatUptime(secs) {
	var d = Math.floor(secs / 86400), h = Math.floor(secs / 3600) % 24,
	    m = Math.floor(secs / 60) % 60, s = secs % 60;

	if (d)
		return d + 'd ' + h + 'h ' + m + 'm';
	if (h)
		return h + 'h ' + m + 'm ' + s + 's';
	if (m)
		return m + 'm ' + s + 's';
	return s + 's';
}

/* The port clients dial: that of the first listen address. */
function listenPort(st) {
	var addr = (st.listen && st.listen.length) ? String(st.listen[0]) : '';
	var port = addr.substring(addr.lastIndexOf(':') + 1);

	return port || uci.get('qpc', 'server', 'port') || '7000';
}

/* qpc://host:port#fingerprint, with the address this page was reached at:
 * the router as the people on its network see it. */
function inviteString(st) {
	var host = window.location.hostname || 'localhost';

	if (host.indexOf(':') >= 0 && host.charAt(0) != '[')
		host = '[' + host + ']';

	return 'qpc://' + host + ':' + listenPort(st) + '#' + st.fingerprint;
}

function copyText(input) {
	input.select();

	if (navigator.clipboard && window.isSecureContext)
		return navigator.clipboard.writeText(input.value);

	document.execCommand('copy');
	return Promise.resolve();
}

// A validator for a directory option: an absolute path, not in RAM.
function persistentDir(inRam) {
	return function(section_id, value) {
		if (value && !/^\//.test(value))
			return _('An absolute path');
		if (/^\/(tmp|var)(\/|$)/.test(value))
			return inRam;
		return true;
	};
}

function statusRows(st) {
	var used = st.store_cap_bytes ? Math.round(st.queued_bytes * 100 / st.store_cap_bytes) : 0;
	var blobsUsed = st.blob_cap_bytes ? Math.round(st.blob_bytes * 100 / st.blob_cap_bytes) : 0;

	return [
		[ _('Status'), E('strong', { 'class': 'qpc-up' }, _('Running')) ],
		[ _('Version'), st.version ],
		[ _('Uptime'), formatUptime(st.uptime_s) ],
		[ _('Listening on'), (st.listen || []).join(', ') ],
		[ _('Registration'), st.registration ],
		[ _('Connections'), String(st.connections) ],
		[ _('Accounts'), String(st.accounts) ],
		[ _('Identities'), String(st.identities) ],
		[ _('Queued messages'), st.queued_messages + ' (' + formatBytes(st.queued_bytes) + ')' ],
		[ _('Store'), formatBytes(st.store_bytes) + _(' on disk; queue cap ') +
			formatBytes(st.store_cap_bytes) + ' (' + used + _('% used') + ')' ],
		[ _('Files'), String(st.blobs) + ' (' + formatBytes(st.blob_bytes) + _('; cap ') +
			formatBytes(st.blob_cap_bytes) + ', ' + blobsUsed + _('% used; kept ') +
			formatUptime(st.blob_lifetime_s) + _(' at most') + ')' ],
		[ _('Since start'), st.enqueued + _(' enqueued, ') + st.delivered + _(' delivered, ') +
			st.expired + _(' expired') ],
		[ _('Last error'), st.last_error == null ? _('none') : E('span', { 'class': 'qpc-error' }, st.last_error) ]
	];
}

function renderStatus(st) {
	if (!st || !st.running)
		return E('div', { 'class': 'alert-message warning' }, [
			E('strong', {}, _('The relay is not running.')), ' ',
			(st && st.error) ? st.error : '',
			E('br'),
			_('Enable it below, then Save & Apply; the system log (logread -e qpc) says why it stopped.')
		]);

	return E('table', { 'class': 'table' }, statusRows(st).map(function(row) {
		return E('tr', { 'class': 'tr' }, [
			E('td', { 'class': 'td left', 'width': '33%' }, row[0]),
			E('td', { 'class': 'td left' }, row[1])
		]);
	}));
}

function renderInvite(st) {
	if (!st || !st.running)
		return E('em', {}, _('Available while the relay runs.'));

	var input = E('input', {
		'class': 'cbi-input-text qpc-invite',
		'type': 'text',
		'readonly': 'readonly',
		'value': inviteString(st),
		'size': 90
	});

	return E('div', {}, [
		E('p', {}, _('Give this to the people who chat through this relay: their client connects to it and trusts only this certificate fingerprint.')),
		E('div', { 'class': 'qpc-invite-row' }, [
			input, ' ',
			E('button', {
				'class': 'cbi-button cbi-button-action',
				'click': function(ev) {
					return copyText(input).then(function() {
						ev.target.textContent = _('Copied');
					});
				}
			}, _('Copy'))
		]),
		E('p', {}, [ _('Certificate fingerprint (SHA-256): '), E('code', { 'class': 'qpc-fingerprint' }, st.fingerprint) ])
	]);
}

function renderUsers(users) {
	if (!users.length)
		return E('em', {}, _('No accounts yet.'));

	return E('table', { 'class': 'table' }, [
		E('tr', { 'class': 'tr table-titles' }, [
			E('th', { 'class': 'th' }, _('Username')),
			E('th', { 'class': 'th' }, _('Devices')),
			E('th', { 'class': 'th' }, _('Queued messages'))
		])
	].concat(users.map(function(u) {
		return E('tr', { 'class': 'tr' }, [
			E('td', { 'class': 'td' }, u.username),
			E('td', { 'class': 'td', 'title': (u.keys || []).join(' ') }, String(u.devices)),
			E('td', { 'class': 'td' }, String(u.queued))
		]);
	})));
}

function handleInviteToken(ev) {
	return callInviteToken().then(function(res) {
		if (!res || !res.token) {
			ui.addNotification(null, E('p', {}, (res && res.error) || _('The relay did not mint a token.')), 'error');
			return;
		}

		ui.addNotification(null, [
			E('p', {}, [ _('One-time registration token: '), E('code', { 'class': 'qpc-token' }, res.token) ]),
			E('p', {}, res.note || _('It admits one new account; give it with the invite string.'))
		], 'info');
	});
}

return view.extend({
	load: function() {
		return Promise.all([
			L.resolveDefault(callStatus(), {}),
			L.resolveDefault(callUsers(), []),
			uci.load('qpc')
		]);
	},

	render: function(data) {
		var st = data[0], users = data[1], m, s, o;

		var statusNode = E('div', { 'id': 'qpc-status' }, renderStatus(st));
		var inviteNode = E('div', { 'id': 'qpc-invite' }, renderInvite(st));
		var usersNode = E('div', { 'id': 'qpc-users' }, renderUsers(users));

		m = new form.Map('qpc', _('Settings'),
			_('The options of /etc/config/qpc; Save & Apply restarts the relay with them.'));

		s = m.section(form.NamedSection, 'server', 'server');
		s.addremove = false;
		s.tab('general', _('General'));
		s.tab('limits', _('Limits'));

		o = s.taboption('general', form.Flag, 'enabled', _('Enabled'),
			_('Run the relay. It stays off after installation until this is set.'));
		o.rmempty = false;

		o = s.taboption('general', form.Value, 'port', _('Port'),
			_('UDP port of the QUIC endpoint, used for every listen address without its own port.'));
		o.datatype = 'port';
		o.placeholder = '7000';

		o = s.taboption('general', form.DynamicList, 'listen', _('Listen addresses'),
			_('"::" is every IPv6 and IPv4 address; an entry may carry its own port, e.g. 192.168.1.1:7001 or [fd00::1]:7001.'));
		o.datatype = 'or(ipaddr,ipaddrport(1))';
		o.placeholder = '::';

		o = s.taboption('general', form.Flag, 'open_firewall', _('Open the firewall'),
			_('Accept the UDP port from the wan zone while the relay runs.'));

		o = s.taboption('general', form.ListValue, 'registration', _('Registration'),
			_('Who may create an account: anyone who reaches the port, whoever has the token (or a one-time invite token), or nobody.'));
		o.value('open', _('Open'));
		o.value('token', _('Token'));
		o.value('closed', _('Closed'));
		o.default = 'token';

		o = s.taboption('general', form.Value, 'registration_token', _('Registration token'));
		o.password = true;
		o.depends('registration', 'token');

		o = s.taboption('general', form.Button, '_invite_token', _('One-time token'),
			_('Mint a token that admits exactly one new account.'));
		o.inputtitle = _('Mint invite token');
		o.inputstyle = 'action';
		o.onclick = handleInviteToken;
		o.depends('registration', 'token');

		o = s.taboption('general', form.Value, 'data_dir', _('Data directory'),
			_('The encrypted store, certificate and key. Keep it on persistent storage: /tmp and /var are lost at reboot.'));
		o.placeholder = '/etc/qpc';
		o.validate = persistentDir(_('/tmp and /var are RAM on OpenWrt; the store would be lost at reboot'));

		o = s.taboption('general', form.Value, 'blob_dir', _('File directory'),
			_('Where sent files (encrypted) are kept, e.g. on USB storage; empty is the data directory. Keep it on persistent storage.'));
		o.placeholder = '/etc/qpc/blobs';
		o.validate = persistentDir(_('/tmp and /var are RAM on OpenWrt; the files would be lost at reboot'));

		o = s.taboption('general', form.Value, 'db_key', _('Store key'),
			_('Encrypts the store; losing it loses the queued messages and the accounts.'));
		o.password = true;
		o.rmempty = false;

		o = s.taboption('general', form.ListValue, 'log_level', _('Log level'),
			_('What reaches the system log (logread -e qpc).'));
		[ 'error', 'warn', 'info', 'debug', 'trace' ].forEach(function(l) { o.value(l) });
		o.default = 'info';

		o = s.taboption('limits', form.Value, 'max_queue_messages', _('Messages per recipient'),
			_('Undelivered messages kept for one recipient.'));
		o.datatype = 'uinteger';
		o.placeholder = '1000';

		o = s.taboption('limits', form.Value, 'max_queue_bytes', _('Bytes per recipient'),
			_('Bytes of undelivered messages kept for one recipient.'));
		o.datatype = 'uinteger';
		o.placeholder = '8388608';

		o = s.taboption('limits', form.Value, 'store_cap_bytes', _('Store cap (bytes)'),
			_('All queued messages together.'));
		o.datatype = 'uinteger';
		o.placeholder = '33554432';

		o = s.taboption('limits', form.Value, 'message_ttl_secs', _('Message lifetime (seconds)'),
			_('Undelivered messages are dropped after this long (1209600 s is 14 days).'));
		o.datatype = 'uinteger';
		o.placeholder = '1209600';

		o = s.taboption('limits', form.Value, 'blob_max_bytes', _('Largest file (bytes)'),
			_('The largest file one person may send through the relay.'));
		o.datatype = 'uinteger';
		o.placeholder = '16777216';

		o = s.taboption('limits', form.Value, 'blob_account_bytes', _('File bytes per account'),
			_('Files of one account not yet fetched by everyone, together.'));
		o.datatype = 'uinteger';
		o.placeholder = '33554432';

		o = s.taboption('limits', form.Value, 'blob_cap_bytes', _('File cap (bytes)'),
			_('All files on the relay together.'));
		o.datatype = 'uinteger';
		o.placeholder = '67108864';

		o = s.taboption('limits', form.Value, 'blob_lifetime_secs', _('File lifetime (seconds)'),
			_('A file is deleted once every recipient has it, or after this long (604800 s is 7 days).'));
		o.datatype = 'uinteger';
		o.placeholder = '604800';

		poll.add(function() {
			return Promise.all([
				L.resolveDefault(callStatus(), {}),
				L.resolveDefault(callUsers(), [])
			]).then(function(fresh) {
				dom.content(statusNode, renderStatus(fresh[0]));
				dom.content(usersNode, renderUsers(fresh[1]));
				if (!!fresh[0].running != !!st.running || fresh[0].fingerprint != st.fingerprint)
					dom.content(inviteNode, renderInvite(fresh[0]));
				st = fresh[0];
			});
		}, 5);

		return m.render().then(function(mapNode) {
			return E('div', {}, [
				E('h2', {}, _('qpc relay')),
				E('div', { 'class': 'cbi-map-descr' },
					_('End-to-end encrypted group chat through this router. The relay stores only ciphertext; the figures refresh every few seconds.')),
				E('div', { 'class': 'cbi-section' }, [ E('h3', {}, _('Status')), statusNode ]),
				E('div', { 'class': 'cbi-section' }, [ E('h3', {}, _('Invite')), inviteNode ]),
				E('div', { 'class': 'cbi-section' }, [ E('h3', {}, _('Accounts')), usersNode ]),
				mapNode
			]);
		});
	}
});
