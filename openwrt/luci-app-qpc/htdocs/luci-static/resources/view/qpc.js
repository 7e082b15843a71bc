'use strict';
'require view';
'require dom';
'require poll';
'require rpc';
'require uci';
'require ui';
'require form';
'require fs';
'require qpc.qrcode as qrcode';

/*
 * The qpc relay's page: whether the relay is up and how full it is
 * (refreshed while the page is open), the invite string people paste into
 * their client, the accounts, the users' reports and the banned accounts
 * (with Dismiss, Ban and Unban), backups, and the settings of
 * /etc/config/qpc.
 * The figures come from the rpcd backend `qpc` (/usr/libexec/rpcd/qpc),
 * which asks the relay over its admin socket.
 *
 * The form checks what the init script checks at start (the same ports,
 * listen addresses, limits and data directories), so that a value the
 * relay would refuse is refused here, with the same words.
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

var callReports = rpc.declare({
	object: 'qpc',
	method: 'reports',
	expect: { '': {} }
});

var callReportDismiss = rpc.declare({
	object: 'qpc',
	method: 'report_dismiss',
	params: [ 'id' ],
	expect: { '': {} }
});

var callBan = rpc.declare({
	object: 'qpc',
	method: 'ban',
	params: [ 'username', 'reason' ],
	expect: { '': {} }
});

var callUnban = rpc.declare({
	object: 'qpc',
	method: 'unban',
	params: [ 'username' ],
	expect: { '': {} }
});

var callInviteToken = rpc.declare({
	object: 'qpc',
	method: 'invite_token',
	expect: { '': {} }
});

var callBackup = rpc.declare({
	object: 'qpc',
	method: 'backup',
	expect: { '': {} }
});

var callRestore = rpc.declare({
	object: 'qpc',
	method: 'restore',
	expect: { '': {} }
});

/* Where the rpcd backend writes a backup and reads a restore (RAM, root's). */
var BACKUP_FILE = '/tmp/qpc-backup.qpcb';
var RESTORE_FILE = '/tmp/qpc-restore.qpcb';

function isIPv4(s) {
	var parts = s.split('.');
	return parts.length == 4 && parts.every(function(p) {
		return /^[0-9]{1,3}$/.test(p) && +p <= 255;
	});
}

/* An IPv6 address without brackets; an interface zone (%br-lan) allowed. */
function isIPv6(s) {
	var m = /^([0-9A-Fa-f:.]+)(%[A-Za-z0-9_.-]+)?$/.exec(s);
	if (!m || m[1].indexOf(':') < 0 || /:::/.test(m[1]) || /::.*::/.test(m[1]))
		return false;
	var addr = m[1];
	if (addr.indexOf('.') >= 0) {
		var tail = addr.substring(addr.lastIndexOf(':') + 1);
		if (!isIPv4(tail))
			return false;
		addr = addr.substring(0, addr.lastIndexOf(':')) + ':0:0';
	}
	if (/^::/.test(addr))
		addr = '0' + addr;
	if (/::$/.test(addr))
		addr = addr + '0';
	if (/^:|:$/.test(addr))
		return false;
	var groups = addr.split(':'), compressed = false, count = 0;
	for (var i = 0; i < groups.length; i++) {
		if (groups[i] === '') {
			compressed = true;
			continue;
		}
		if (groups[i].length > 4 || groups[i].indexOf('.') >= 0)
			return false;
		count++;
	}
	return compressed ? count <= 8 : count == 8;
}

function isPort(p) {
	return /^[0-9]{1,5}$/.test(p) && +p >= 1024 && +p <= 65535;
}

/* One listen entry, by the rules of the init script's check_listen:
 * true, or the sentence that says what is wrong. */
function checkListen(entry) {
	var addr, port = null, ok;
	var m = /^\[(.*)\]:(.*)$/.exec(entry);

	if (m) {
		addr = m[1]; port = m[2]; ok = isIPv6(addr);
	}
	else if (/^\[.*\]$/.test(entry)) {
		addr = entry.slice(1, -1); ok = isIPv6(addr);
	}
	else if (/:.*:/.test(entry)) {
		ok = isIPv6(entry);
	}
	else if (entry.indexOf(':') >= 0) {
		addr = entry.substring(0, entry.lastIndexOf(':'));
		port = entry.substring(entry.lastIndexOf(':') + 1);
		ok = isIPv4(addr);
	}
	else {
		ok = isIPv4(entry);
	}
	if (!ok)
		return _('Not an IP address (e.g. 192.168.1.1, 192.168.1.1:7001, fd00::1, [fd00::1]:7001; host names go in Host names)');
	if (port !== null && !isPort(port))
		return _('The port must be between 1024 and 65535: the relay runs as user qpc, which cannot bind lower ports');
	return true;
}

/* A data directory, by the rules of the init script's check_data_dir (the
 * ones that need no look at the router's disks). */
function checkDataDir(dir) {
	if (!/^\//.test(dir))
		return _('An absolute path');
	if (dir != '/')
		dir = dir.replace(/\/$/, '');
	if (/^\/(|etc|etc\/config|etc\/init\.d|usr|usr\/[^/]+|bin|sbin|lib|lib\/[^/]+|root|overlay|overlay\/upper|rom|www|mnt|media|home|proc(\/.*)?|sys(\/.*)?|dev(\/.*)?|boot(\/.*)?)$/.test(dir))
		return _('A system directory: the relay would own it. Use a directory of its own, e.g. /etc/qpc');
	if (/(^|\/)\.\.?(\/|$)|\/\//.test(dir))
		return _('A plain path, without ".", ".." or "//"');
	if (/^\/(tmp|var)(\/|$)/.test(dir))
		return _('/tmp and /var are RAM on OpenWrt; the store would be lost at reboot');
	return true;
}

function downloadBackup() {
	return callBackup().then(function(res) {
		if (!res || !res.path)
			throw new Error((res && res.error) || _('The relay made no backup.'));
		return fs.read_direct(res.path, 'blob');
	}).then(function(blob) {
		var link = E('a', {
			'href': URL.createObjectURL(blob),
			'download': 'qpc-backup-%s.qpcb'.format(new Date().toISOString().substring(0, 10))
		});
		document.body.appendChild(link);
		link.click();
		document.body.removeChild(link);
		ui.addNotification(null, E('p', {}, _('Backup downloaded. It holds the encrypted store and the certificate key: keep it private; restoring it needs this relay\'s store key.')), 'info');
	}).catch(function(e) {
		ui.addNotification(null, E('p', {}, _('Backup failed: %s').format(e.message)), 'error');
	});
}

function restoreBackup() {
	return ui.uploadFile(RESTORE_FILE).then(function() {
		return callRestore();
	}).then(function(res) {
		if (!res || !res.restored)
			throw new Error((res && res.error) || _('The relay did not restore the backup.'));
		ui.addNotification(null, E('p', {}, _('Backup restored; the relay runs with it again.')), 'info');
	}).catch(function(e) {
		ui.addNotification(null, E('p', {}, _('Restore failed: %s').format(e.message)), 'error');
	});
}

/* The port clients dial: that of the first listen address. */
function listenPort(st) {
	var addr = (st.listen && st.listen.length) ? String(st.listen[0]) : '';
	var port = addr.substring(addr.lastIndexOf(':') + 1);

	return port || uci.get('qpc', 'server', 'port') || '7000';
}

/* qpc://host:port#fingerprint;log=LOGKEY, with the address this page was
 * reached at: the router as the people on its network see it. The log key
 * (key transparency) follows the fingerprint; a relay without one gives
 * the older qpc://host:port#fingerprint. */
function inviteString(st) {
	var host = window.location.hostname || 'localhost';

	if (host.indexOf(':') >= 0 && host.charAt(0) != '[')
		host = '[' + host + ']';

	return 'qpc://' + host + ':' + listenPort(st) + '#' + st.fingerprint +
		(st.log_key ? ';log=' + st.log_key : '');
}

function copyText(input) {
	input.select();

	if (navigator.clipboard && window.isSecureContext)
		return navigator.clipboard.writeText(input.value);

	document.execCommand('copy');
	return Promise.resolve();
}

function statusRows(st) {
	var used = st.store_cap_bytes ? Math.round(st.queued_bytes * 100 / st.store_cap_bytes) : 0;
	var blobsUsed = st.blob_cap_bytes ? Math.round(st.blob_bytes * 100 / st.blob_cap_bytes) : 0;

	return [
		[ _('Status'), E('strong', { 'class': 'qpc-up' }, _('Running')) ],
		[ _('Version'), st.version ],
		[ _('Uptime'), '%t'.format(st.uptime_s) ],
		[ _('Listening on'), (st.listen || []).join(', ') ],
		[ _('Registration'), st.registration ],
		[ _('Connections'), String(st.connections) ],
		[ _('Accounts'), String(st.accounts) ],
		[ _('Identities'), String(st.identities) ],
		[ _('Key transparency log'), st.log_size == null ? _('none') :
			_('%d entries, head %s').format(st.log_size, st.log_head) ],
		[ _('Queued messages'), _('%d (%1024.1mB)').format(st.queued_messages, st.queued_bytes) ],
		[ _('Store'), _('%1024.1mB on disk; queue cap %1024.1mB (%d%% used)').format(st.store_bytes, st.store_cap_bytes, used) ],
		[ _('Files'), _('%d (%1024.1mB); cap %1024.1mB (%d%% used), kept %t at most').format(st.blobs, st.blob_bytes, st.blob_cap_bytes, blobsUsed, st.blob_lifetime_s) ],
		[ _('Since start'), _('%d enqueued, %d delivered, %d expired').format(st.enqueued, st.delivered, st.expired) ],
		[ _('Moderation'), _('%d reports waiting, %d accounts banned').format(st.reports || 0, st.banned || 0) ],
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

	var invite = inviteString(st);
	/* The whole string, wrapped where it must: a fixed-width input would
	 * show only its start. */
	var text = E('textarea', {
		'class': 'cbi-input-textarea qpc-invite',
		'readonly': 'readonly',
		'rows': 2,
		'spellcheck': 'false',
		'style': 'width:100%;font-family:monospace;word-break:break-all;resize:none'
	}, invite);
	var qr;

	try {
		qr = E('img', {
			'class': 'qpc-invite-qr',
			'src': qrcode.svgURI(invite),
			'alt': _('QR code of the invite string'),
			'width': 200,
			'height': 200,
			'style': 'image-rendering:pixelated'
		});
	}
	catch (e) {
		qr = E('em', {}, _('The invite string is too long for a QR code.'));
	}

	return E('div', {}, [
		E('p', {}, _('Give this to the people who chat through this relay: their client connects to it, trusts only this certificate fingerprint, and checks every account against the log key after it.')),
		E('div', { 'class': 'qpc-invite-row' }, [
			text,
			E('button', {
				'class': 'cbi-button cbi-button-action',
				'click': function(ev) {
					return copyText(text).then(function() {
						ev.target.textContent = _('Copied');
					});
				}
			}, _('Copy'))
		]),
		E('p', {}, _('Or scan it with the phone that runs the client:')),
		qr,
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

/* Runs one moderation call, says what it did, and redraws the section. */
function moderate(call, node) {
	return call.then(function(res) {
		if (!res || res.error)
			ui.addNotification(null, E('p', {}, _('The relay refused: %s').format((res && res.error) || '?')), 'error');
		else
			ui.addNotification(null, E('p', {}, res.done), 'info');
		return L.resolveDefault(callReports(), {});
	}).then(function(fresh) {
		dom.content(node, renderModeration(fresh, node));
	});
}

function ago(at_ms) {
	return _('%t ago').format(Math.max(0, Math.floor((Date.now() - at_ms) / 1000)));
}

function renderModeration(data, node) {
	var reports = (data && data.reports) || [], banned = (data && data.banned) || [];
	var reportsNode, bannedNode;

	if (!reports.length) {
		reportsNode = E('em', {}, _('No reports.'));
	}
	else {
		reportsNode = E('table', { 'class': 'table qpc-reports' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, _('Reported')),
				E('th', { 'class': 'th' }, _('By')),
				E('th', { 'class': 'th' }, _('Reason')),
				E('th', { 'class': 'th' }, _('When')),
				E('th', { 'class': 'th cbi-section-actions' }, '')
			])
		].concat(reports.map(function(r) {
			return E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td' }, r.reported),
				E('td', { 'class': 'td' }, r.reporter),
				E('td', { 'class': 'td' }, r.reason || E('em', {}, _('no reason given'))),
				E('td', { 'class': 'td' }, ago(r.at_ms)),
				E('td', { 'class': 'td cbi-section-actions' }, [
					E('button', {
						'class': 'cbi-button cbi-button-neutral qpc-dismiss',
						'click': ui.createHandlerFn(this, function() { return moderate(callReportDismiss(r.id), node) })
					}, _('Dismiss')), ' ',
					E('button', {
						'class': 'cbi-button cbi-button-negative qpc-ban',
						'click': ui.createHandlerFn(this, function() {
							return moderate(callBan(r.reported, r.reason ? _('reported: %s').format(r.reason) : ''), node);
						})
					}, _('Ban %s').format(r.reported))
				])
			]);
		})));
	}

	if (!banned.length) {
		bannedNode = E('em', {}, _('No banned accounts.'));
	}
	else {
		bannedNode = E('table', { 'class': 'table qpc-banned' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, _('Banned account')),
				E('th', { 'class': 'th' }, _('Reason')),
				E('th', { 'class': 'th' }, _('Since')),
				E('th', { 'class': 'th cbi-section-actions' }, '')
			])
		].concat(banned.map(function(b) {
			return E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td' }, b.username),
				E('td', { 'class': 'td' }, b.reason || E('em', {}, _('no reason given'))),
				E('td', { 'class': 'td' }, ago(b.at_ms)),
				E('td', { 'class': 'td cbi-section-actions' }, E('button', {
					'class': 'cbi-button cbi-button-positive qpc-unban',
					'click': ui.createHandlerFn(this, function() { return moderate(callUnban(b.username), node) })
				}, _('Unban')))
			]);
		})));
	}

	return [
		E('p', {}, _('What users reported to you: the account and their note. The relay never sees messages, so there is nothing else to show. A banned account cannot log in or send; its queued messages are kept until you unban or delete it.')),
		reportsNode,
		E('h4', {}, _('Banned accounts')),
		bannedNode
	];
}

/* A peer relay as qpc-server takes it: qpc://HOST[:PORT]#FINGERPRINT. */
function checkPeer(value) {
	var m = /^qpc:\/\/([^#\/]+)#([0-9A-Fa-f]*)$/.exec(value);
	if (!m)
		return _('Expected qpc://HOST:PORT#FINGERPRINT, the fingerprint from the status of the peer relay.');
	if (m[2].length != 64)
		return _('The fingerprint must be 64 hex digits (a SHA-256).');
	return true;
}

function renderPeers(peers) {
	if (!peers || !peers.length)
		return E('em', {}, _('No peer relays. Add one below to chat with the people of another relay.'));

	return E('table', { 'class': 'table' }, [
		E('tr', { 'class': 'tr table-titles' }, [
			E('th', { 'class': 'th' }, _('Peer relay')),
			E('th', { 'class': 'th' }, _('Reachable')),
			E('th', { 'class': 'th' }, _('Queued for it')),
			E('th', { 'class': 'th' }, _('Last error'))
		])
	].concat(peers.map(function(p) {
		return E('tr', { 'class': 'tr' }, [
			E('td', { 'class': 'td', 'title': p.fingerprint }, p.address),
			E('td', { 'class': 'td' }, p.reachable ? _('yes') : _('no')),
			E('td', { 'class': 'td' }, String(p.queued)),
			E('td', { 'class': 'td' }, p.last_error || '-')
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
	/* For the tests, which hold these to the init script's rules. */
	checkListen: checkListen,
	checkDataDir: checkDataDir,
	checkPeer: checkPeer,

	load: function() {
		return Promise.all([
			L.resolveDefault(callStatus(), {}),
			L.resolveDefault(callUsers(), []),
			L.resolveDefault(callReports(), {}),
			uci.load('qpc')
		]);
	},

	render: function(data) {
		var st = data[0], users = data[1], m, s, o;
		var moderationNode = E('div', { 'id': 'qpc-moderation' });
		dom.content(moderationNode, renderModeration(data[2], moderationNode));

		var statusNode = E('div', { 'id': 'qpc-status' }, renderStatus(st));
		var inviteNode = E('div', { 'id': 'qpc-invite' }, renderInvite(st));
		var usersNode = E('div', { 'id': 'qpc-users' }, renderUsers(users));
		var peersNode = E('div', { 'id': 'qpc-peers' }, renderPeers(st.peers));

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
			_('UDP port of the QUIC endpoint, used for every listen address without its own port (1024-65535).'));
		o.datatype = 'and(uinteger,range(1024,65535))';
		o.placeholder = '7000';

		o = s.taboption('general', form.DynamicList, 'listen', _('Listen addresses'),
			_('"::" is every IPv6 and IPv4 address; an entry may carry its own port, e.g. 192.168.1.1:7001 or [fd00::1]:7001.'));
		o.validate = function(section_id, value) {
			return (value == null || value === '') ? true : checkListen(value);
		};
		o.placeholder = '::';

		o = s.taboption('general', form.DynamicList, 'hostname', _('Host names'),
			_('Names clients use to reach the relay, added to a newly made certificate.'));
		o.datatype = 'host';

		o = s.taboption('general', form.DynamicList, 'peer', _('Peer relays'),
			_('Relays this one delivers to and takes from, qpc://HOST:PORT#FINGERPRINT; the owner of each must add this relay too.'));
		o.validate = function(section_id, value) {
			return (value == null || value === '') ? true : checkPeer(value);
		};

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
		o.validate = function(section_id, value) {
			return value ? checkDataDir(value) : true;
		};

		o = s.taboption('general', form.Value, 'blob_dir', _('File directory'),
			_('Where sent files (encrypted) are kept, e.g. on USB storage; empty is the data directory. Keep it on persistent storage.'));
		o.placeholder = '/etc/qpc/blobs';
		o.validate = function(section_id, value) {
			return value ? checkDataDir(value) : true;
		};

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
		o.datatype = 'and(uinteger,range(1,1000000))';
		o.placeholder = '1000';

		o = s.taboption('limits', form.Value, 'max_queue_bytes', _('Bytes per recipient'),
			_('Bytes of undelivered messages kept for one recipient.'));
		o.datatype = 'and(uinteger,range(1024,4294967295))';
		o.placeholder = '8388608';

		o = s.taboption('limits', form.Value, 'store_cap_bytes', _('Store cap (bytes)'),
			_('All queued messages together.'));
		o.datatype = 'and(uinteger,range(1024,68719476736))';
		o.placeholder = '33554432';

		o = s.taboption('limits', form.Value, 'message_ttl_secs', _('Message lifetime (seconds)'),
			_('Undelivered messages are dropped after this long (1209600 s is 14 days; at most a year, 31536000 s).'));
		o.datatype = 'and(uinteger,range(60,31536000))';
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
				L.resolveDefault(callUsers(), []),
				L.resolveDefault(callReports(), {})
			]).then(function(fresh) {
				dom.content(statusNode, renderStatus(fresh[0]));
				dom.content(usersNode, renderUsers(fresh[1]));
				dom.content(moderationNode, renderModeration(fresh[2], moderationNode));
				dom.content(peersNode, renderPeers(fresh[0].peers));
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
				E('div', { 'class': 'cbi-section' }, [ E('h3', {}, _('Reports')), moderationNode ]),
				E('div', { 'class': 'cbi-section' }, [ E('h3', {}, _('Peer relays')), peersNode ]),
				E('div', { 'class': 'cbi-section', 'id': 'qpc-backup' }, [
					E('h3', {}, _('Backup')),
					E('p', {}, _('A consistent copy of the running relay: the encrypted store with every account and queued message, and the certificate with its key, so that clients keep trusting the relay after a restore.')),
					E('button', { 'class': 'cbi-button cbi-button-action qpc-backup', 'click': ui.createHandlerFn(this, downloadBackup) }, _('Download backup')), ' ',
					E('button', { 'class': 'cbi-button cbi-button-negative qpc-restore', 'click': ui.createHandlerFn(this, restoreBackup) }, _('Restore backup...'))
				]),
				mapNode
			]);
		});
	}
});
