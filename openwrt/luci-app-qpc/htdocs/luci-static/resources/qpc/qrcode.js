'use strict';
'require baseclass';

/*
 * A small QR code encoder (ISO/IEC 18004) for the invite string: byte
 * mode, error correction level M, versions 1 to 10 (up to 213 bytes), the
 * mask with the lowest penalty. Written for luci-app-qpc so that the page
 * needs nothing from outside the router.
 *
 *   qrcode.matrix(text)   rows of booleans (true = dark), without quiet zone
 *   qrcode.svgURI(text)   a data: URI of an SVG image with a 4-module margin
 */

/* Per version at level M: [ EC codewords per block, [ blocks, data codewords ]... ] */
var BLOCKS_M = [ null,
	[ 10, [ 1, 16 ] ], [ 16, [ 1, 28 ] ], [ 26, [ 1, 44 ] ], [ 18, [ 2, 32 ] ],
	[ 24, [ 2, 43 ] ], [ 16, [ 4, 27 ] ], [ 18, [ 4, 31 ] ], [ 22, [ 2, 38 ], [ 2, 39 ] ],
	[ 22, [ 3, 36 ], [ 2, 37 ] ], [ 26, [ 4, 43 ], [ 1, 44 ] ]
];
var ALIGN = [ null, [], [ 6, 18 ], [ 6, 22 ], [ 6, 26 ], [ 6, 30 ], [ 6, 34 ],
	[ 6, 22, 38 ], [ 6, 24, 42 ], [ 6, 26, 46 ], [ 6, 28, 50 ] ];

/* GF(256) with the polynomial x^8 + x^4 + x^3 + x^2 + 1. */
var EXP = [], LOG = [];
(function() {
	for (var i = 0, x = 1; i < 255; i++) {
		EXP[i] = x;
		LOG[x] = i;
		x <<= 1;
		if (x & 0x100)
			x ^= 0x11d;
	}
	for (i = 255; i < 512; i++)
		EXP[i] = EXP[i - 255];
})();

function gfMul(a, b) {
	return (a && b) ? EXP[LOG[a] + LOG[b]] : 0;
}

/* Reed-Solomon remainder of data by the generator of degree n. */
function rsRemainder(data, n) {
	var gen = [ 1 ], i, j, rem = [];

	for (i = 0; i < n; i++) {
		var next = [];
		for (j = 0; j <= gen.length; j++)
			next[j] = (j < gen.length ? gen[j] : 0) ^ (j > 0 ? gfMul(gen[j - 1], EXP[i]) : 0);
		gen = next;
	}
	for (i = 0; i < n; i++)
		rem[i] = 0;
	data.forEach(function(b) {
		var factor = b ^ rem.shift();
		rem.push(0);
		for (j = 0; j < n; j++)
			rem[j] ^= gfMul(gen[j + 1], factor);
	});
	return rem;
}

function dataCodewords(version) {
	var spec = BLOCKS_M[version], n = 0;
	for (var g = 1; g < spec.length; g++)
		n += spec[g][0] * spec[g][1];
	return n;
}

/* The codewords of `bytes` in version `version`, blocks interleaved. */
function codewords(bytes, version) {
	var bits = [], capacity = dataCodewords(version) * 8, i;
	var push = function(value, len) {
		for (var k = len - 1; k >= 0; k--)
			bits.push((value >>> k) & 1);
	};

	push(4, 4);
	push(bytes.length, version < 10 ? 8 : 16);
	bytes.forEach(function(b) { push(b, 8) });
	push(0, Math.min(4, capacity - bits.length));
	while (bits.length % 8)
		bits.push(0);
	for (i = 0; bits.length < capacity; i++)
		push(i % 2 ? 0x11 : 0xec, 8);

	var data = [];
	for (i = 0; i < bits.length; i += 8)
		data.push(parseInt(bits.slice(i, i + 8).join(''), 2));

	var spec = BLOCKS_M[version], blocks = [], pos = 0;
	for (var g = 1; g < spec.length; g++)
		for (var b = 0; b < spec[g][0]; b++) {
			var block = data.slice(pos, pos + spec[g][1]);
			pos += spec[g][1];
			blocks.push({ data: block, ec: rsRemainder(block, spec[0]) });
		}

	var out = [], longest = blocks[blocks.length - 1].data.length;
	for (i = 0; i < longest; i++)
		blocks.forEach(function(bl) { if (i < bl.data.length) out.push(bl.data[i]) });
	for (i = 0; i < spec[0]; i++)
		blocks.forEach(function(bl) { out.push(bl.ec[i]) });
	return out;
}

function Symbol(version) {
	this.size = version * 4 + 17;
	this.dark = [];
	this.fixed = [];
	for (var y = 0; y < this.size; y++) {
		this.dark.push([]);
		this.fixed.push([]);
		for (var x = 0; x < this.size; x++) {
			this.dark[y].push(false);
			this.fixed[y].push(false);
		}
	}
}

Symbol.prototype.set = function(x, y, dark) {
	this.dark[y][x] = dark;
	this.fixed[y][x] = true;
};

Symbol.prototype.drawPatterns = function(version) {
	var size = this.size, self = this, i, dx, dy;

	for (i = 0; i < size; i++) {
		this.set(6, i, i % 2 == 0);
		this.set(i, 6, i % 2 == 0);
	}
	[ [ 3, 3 ], [ size - 4, 3 ], [ 3, size - 4 ] ].forEach(function(c) {
		for (dy = -4; dy <= 4; dy++)
			for (dx = -4; dx <= 4; dx++) {
				var x = c[0] + dx, y = c[1] + dy, d = Math.max(Math.abs(dx), Math.abs(dy));
				if (x >= 0 && x < size && y >= 0 && y < size)
					self.set(x, y, d != 2 && d != 4);
			}
	});
	var pos = ALIGN[version], last = pos.length - 1;
	pos.forEach(function(cy, i) {
		pos.forEach(function(cx, j) {
			if ((i == 0 && j == 0) || (i == 0 && j == last) || (i == last && j == 0))
				return;
			for (dy = -2; dy <= 2; dy++)
				for (dx = -2; dx <= 2; dx++)
					self.set(cx + dx, cy + dy, Math.max(Math.abs(dx), Math.abs(dy)) != 1);
		});
	});
	this.drawFormat(0);
	if (version >= 7) {
		var rem = version;
		for (i = 0; i < 12; i++)
			rem = (rem << 1) ^ ((rem >>> 11) * 0x1f25);
		var bits = (version << 12) | rem;
		for (i = 0; i < 18; i++) {
			var bit = ((bits >>> i) & 1) == 1, a = size - 11 + i % 3, b = Math.floor(i / 3);
			this.set(a, b, bit);
			this.set(b, a, bit);
		}
	}
};

/* Format information: level M (bits 00) and the mask. */
Symbol.prototype.drawFormat = function(mask) {
	var size = this.size, rem = mask, i;
	for (i = 0; i < 10; i++)
		rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
	var bits = ((mask << 10) | rem) ^ 0x5412;
	var bit = function(k) { return ((bits >>> k) & 1) == 1 };

	for (i = 0; i <= 5; i++)
		this.set(8, i, bit(i));
	this.set(8, 7, bit(6));
	this.set(8, 8, bit(7));
	this.set(7, 8, bit(8));
	for (i = 9; i < 15; i++)
		this.set(14 - i, 8, bit(i));
	for (i = 0; i < 8; i++)
		this.set(size - 1 - i, 8, bit(i));
	for (i = 8; i < 15; i++)
		this.set(8, size - 15 + i, bit(i));
	this.set(8, size - 8, true);
};

Symbol.prototype.drawData = function(words) {
	var size = this.size, i = 0;
	for (var right = size - 1; right >= 1; right -= 2) {
		if (right == 6)
			right = 5;
		for (var vert = 0; vert < size; vert++)
			for (var j = 0; j < 2; j++) {
				var x = right - j, up = ((right + 1) & 2) == 0, y = up ? size - 1 - vert : vert;
				if (!this.fixed[y][x] && i < words.length * 8) {
					this.dark[y][x] = ((words[i >>> 3] >>> (7 - (i & 7))) & 1) == 1;
					i++;
				}
			}
	}
};

var MASKS = [
	function(x, y) { return (x + y) % 2 == 0 },
	function(x, y) { return y % 2 == 0 },
	function(x, y) { return x % 3 == 0 },
	function(x, y) { return (x + y) % 3 == 0 },
	function(x, y) { return (Math.floor(x / 3) + Math.floor(y / 2)) % 2 == 0 },
	function(x, y) { return x * y % 2 + x * y % 3 == 0 },
	function(x, y) { return (x * y % 2 + x * y % 3) % 2 == 0 },
	function(x, y) { return ((x + y) % 2 + x * y % 3) % 2 == 0 }
];

Symbol.prototype.applyMask = function(mask) {
	for (var y = 0; y < this.size; y++)
		for (var x = 0; x < this.size; x++)
			if (!this.fixed[y][x] && MASKS[mask](x, y))
				this.dark[y][x] = !this.dark[y][x];
};

/* The standard's penalty score: runs, 2x2 blocks, finder-like patterns, balance. */
Symbol.prototype.penalty = function() {
	var size = this.size, dark = this.dark, score = 0, count = 0, x, y, k;
	var line = function(get) {
		var run = 1, s = 0, cells = [];
		for (var i = 0; i < size; i++)
			cells.push(get(i));
		for (i = 1; i <= size; i++) {
			if (i < size && cells[i] == cells[i - 1]) {
				run++;
				continue;
			}
			if (run >= 5)
				s += 3 + run - 5;
			run = 1;
		}
		var pattern = '10111010000', rev = '00001011101', str = cells.map(function(c) { return c ? 1 : 0 }).join('');
		for (i = 0; i + 11 <= size; i++) {
			var part = str.substr(i, 11);
			if (part == pattern || part == rev)
				s += 40;
		}
		return s;
	};
	for (k = 0; k < size; k++) {
		score += line(function(i) { return dark[k][i] });
		score += line(function(i) { return dark[i][k] });
	}
	for (y = 0; y < size - 1; y++)
		for (x = 0; x < size - 1; x++) {
			var c = dark[y][x];
			if (c == dark[y][x + 1] && c == dark[y + 1][x] && c == dark[y + 1][x + 1])
				score += 3;
		}
	for (y = 0; y < size; y++)
		for (x = 0; x < size; x++)
			if (dark[y][x])
				count++;
	var total = size * size;
	score += (Math.ceil(Math.abs(count * 20 - total * 10) / total) - 1) * 10;
	return score;
};

function utf8(text) {
	var bytes = [], s = unescape(encodeURIComponent(String(text)));
	for (var i = 0; i < s.length; i++)
		bytes.push(s.charCodeAt(i));
	return bytes;
}

function matrix(text) {
	var bytes = utf8(text), version;

	for (version = 1; version <= 10; version++)
		if (4 + (version < 10 ? 8 : 16) + bytes.length * 8 <= dataCodewords(version) * 8)
			break;
	if (version > 10)
		throw new Error('too long for a QR code of version 10: ' + bytes.length + ' bytes');

	var words = codewords(bytes, version), best = null, bestScore = Infinity;
	for (var mask = 0; mask < 8; mask++) {
		var sym = new Symbol(version);
		sym.drawPatterns(version);
		sym.drawData(words);
		sym.applyMask(mask);
		sym.drawFormat(mask);
		var score = sym.penalty();
		if (score < bestScore) {
			best = sym;
			bestScore = score;
		}
	}
	return best.dark;
}

function svgURI(text) {
	var rows = matrix(text), n = rows.length + 8, path = '';
	rows.forEach(function(row, y) {
		row.forEach(function(d, x) {
			if (d)
				path += 'M' + (x + 4) + ' ' + (y + 4) + 'h1v1h-1z';
		});
	});
	var svg = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ' + n + ' ' + n +
		'" shape-rendering="crispEdges"><rect width="' + n + '" height="' + n +
		'" fill="#fff"/><path d="' + path + '" fill="#000"/></svg>';
	return 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(svg);
}

return baseclass.extend({
	matrix: matrix,
	svgURI: svgURI
});
