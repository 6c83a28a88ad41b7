// A small synchronous decoder for the PNGs the writer produces: 8-bit
// grayscale, not interlaced. Decoding hundreds of small channel images
// through createImageBitmap costs a task hop and a canvas readback each;
// inflating them here is several times faster and yields the gray levels
// directly. Any other kind of PNG returns null, and the caller falls back to
// the browser's decoder.

const LBASE = new Uint16Array([
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
  163, 195, 227, 258,
]);
const LEXT = new Uint8Array([
  0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
]);
const DBASE = new Uint16Array([
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049,
  3073, 4097, 6145, 8193, 12289, 16385, 24577,
]);
const DEXT = new Uint8Array([
  0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
]);
const CLEN_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
const FAST_BITS = 9;
const FAST_MASK = (1 << FAST_BITS) - 1;

class Corrupt extends Error {}

/** A canonical Huffman code: a direct table for short codes, counts for long ones. */
function buildTree(lengths, n) {
  const counts = new Uint16Array(16);
  for (let i = 0; i < n; i++) counts[lengths[i]]++;
  counts[0] = 0;
  const offs = new Uint16Array(16);
  for (let i = 1; i < 16; i++) offs[i] = offs[i - 1] + counts[i - 1];
  const symbols = new Uint16Array(n);
  for (let i = 0; i < n; i++) if (lengths[i]) symbols[offs[lengths[i]]++] = i;
  const fast = new Int32Array(1 << FAST_BITS);
  let code = 0;
  const next = new Uint16Array(16);
  for (let len = 1; len < 16; len++) {
    code = (code + counts[len - 1]) << 1;
    next[len] = code;
  }
  for (let i = 0; i < n; i++) {
    const len = lengths[i];
    if (!len || len > FAST_BITS) continue;
    const c = next[len]++;
    let rev = 0;
    for (let b = 0; b < len; b++) rev |= ((c >> b) & 1) << (len - 1 - b);
    for (let j = rev; j <= FAST_MASK; j += 1 << len) fast[j] = (i << 4) | len;
  }
  return { counts, symbols, fast };
}

let FIXED = null;
function fixedTrees() {
  if (!FIXED) {
    const l = new Uint8Array(288);
    l.fill(8, 0, 144);
    l.fill(9, 144, 256);
    l.fill(7, 256, 280);
    l.fill(8, 280, 288);
    const d = new Uint8Array(30).fill(5);
    FIXED = [buildTree(l, 288), buildTree(d, 30)];
  }
  return FIXED;
}

/** Inflates a raw deflate stream into `out` (whose size is known); returns bytes written. */
function inflate(src, start, out) {
  let pos = start;
  let buf = 0;
  let cnt = 0;
  let o = 0;
  const end = src.length;

  const need = (n) => {
    while (cnt < n) {
      // Past the end, zeros: a truncated stream ends in a Corrupt error below.
      buf |= (pos < end ? src[pos] : 0) << cnt;
      pos++;
      cnt += 8;
    }
  };
  const bits = (n) => {
    need(n);
    const v = buf & ((1 << n) - 1);
    buf >>>= n;
    cnt -= n;
    return v;
  };
  const sym = (t) => {
    need(15);
    const e = t.fast[buf & FAST_MASK];
    if (e) {
      const len = e & 15;
      buf >>>= len;
      cnt -= len;
      return e >> 4;
    }
    let code = 0;
    let first = 0;
    let index = 0;
    for (let len = 1; len < 16; len++) {
      code |= (buf >>> (len - 1)) & 1;
      const count = t.counts[len];
      if (code - first < count) {
        buf >>>= len;
        cnt -= len;
        return t.symbols[index + code - first];
      }
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
    throw new Corrupt("bad Huffman code");
  };

  let last = 0;
  while (!last) {
    last = bits(1);
    const type = bits(2);
    if (type === 0) {
      const drop = cnt & 7;
      buf >>>= drop;
      cnt -= drop;
      const len = bits(16);
      const nlen = bits(16);
      if ((len ^ 0xffff) !== nlen) throw new Corrupt("bad stored block");
      let k = 0;
      while (k < len && cnt > 0) {
        out[o++] = bits(8);
        k++;
      }
      if (pos + (len - k) > end || o + (len - k) > out.length)
        throw new Corrupt("stored block overruns");
      out.set(src.subarray(pos, pos + len - k), o);
      o += len - k;
      pos += len - k;
      continue;
    }
    let lit;
    let dist;
    if (type === 1) {
      [lit, dist] = fixedTrees();
    } else if (type === 2) {
      const hlit = bits(5) + 257;
      const hdist = bits(5) + 1;
      const hclen = bits(4) + 4;
      const cl = new Uint8Array(19);
      for (let i = 0; i < hclen; i++) cl[CLEN_ORDER[i]] = bits(3);
      const clt = buildTree(cl, 19);
      const lengths = new Uint8Array(hlit + hdist);
      for (let i = 0; i < hlit + hdist;) {
        const s = sym(clt);
        if (s < 16) lengths[i++] = s;
        else if (s === 16) {
          if (!i) throw new Corrupt("repeat with no length");
          const prev = lengths[i - 1];
          for (let r = 3 + bits(2); r > 0; r--) lengths[i++] = prev;
        } else if (s === 17) i += 3 + bits(3);
        else i += 11 + bits(7);
      }
      lit = buildTree(lengths.subarray(0, hlit), hlit);
      dist = buildTree(lengths.subarray(hlit), hdist);
    } else {
      throw new Corrupt("bad block type");
    }
    for (;;) {
      const s = sym(lit);
      if (s < 256) {
        if (o >= out.length) throw new Corrupt("output overruns");
        out[o++] = s;
      } else if (s === 256) {
        break;
      } else {
        const li = s - 257;
        if (li >= 29) throw new Corrupt("bad length");
        const len = LBASE[li] + bits(LEXT[li]);
        const di = sym(dist);
        if (di >= 30) throw new Corrupt("bad distance");
        const d = DBASE[di] + bits(DEXT[di]);
        if (d > o || o + len > out.length) throw new Corrupt("bad back-reference");
        if (d >= len && len > 16) {
          out.copyWithin(o, o - d, o - d + len);
          o += len;
        } else {
          for (let k = 0; k < len; k++, o++) out[o] = out[o - d];
        }
      }
    }
    if (pos > end + 4) throw new Corrupt("truncated stream");
  }
  return o;
}

function u32(b, i) {
  return ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/** {width, height, gray} for an 8-bit grayscale PNG, or null for any other PNG. */
export function decodeGrayPng(bytes) {
  if (bytes.length < 33 || SIGNATURE.some((v, i) => bytes[i] !== v)) return null;
  let width = 0;
  let height = 0;
  const idat = [];
  let idatLen = 0;
  for (let i = 8; i + 8 <= bytes.length;) {
    const len = u32(bytes, i);
    const type = String.fromCharCode(bytes[i + 4], bytes[i + 5], bytes[i + 6], bytes[i + 7]);
    const data = i + 8;
    if (data + len > bytes.length) return null;
    if (type === "IHDR") {
      width = u32(bytes, data);
      height = u32(bytes, data + 4);
      const depth = bytes[data + 8];
      const colour = bytes[data + 9];
      const interlace = bytes[data + 12];
      if (depth !== 8 || colour !== 0 || interlace !== 0) return null;
    } else if (type === "IDAT") {
      idat.push(bytes.subarray(data, data + len));
      idatLen += len;
    } else if (type === "IEND") {
      break;
    } else if (type === "tRNS" || type === "PLTE") {
      return null;
    }
    i = data + len + 4;
  }
  if (!width || !height || !idat.length) return null;
  let z = idat[0];
  if (idat.length > 1) {
    z = new Uint8Array(idatLen);
    let k = 0;
    for (const part of idat) {
      z.set(part, k);
      k += part.length;
    }
  }
  if ((z[0] & 0x0f) !== 8 || (z[1] & 0x20) !== 0) return null;
  const stride = width + 1;
  const raw = new Uint8Array(stride * height);
  try {
    if (inflate(z, 2, raw) !== raw.length) return null;
  } catch (e) {
    if (e instanceof Corrupt) return null;
    throw e;
  }
  const gray = new Uint8Array(width * height);
  // One loop per filter type: a switch per pixel costs more than the work.
  for (let y = 0; y < height; y++) {
    const f = raw[y * stride];
    const s = y * stride + 1;
    const r = y * width;
    const up = r - width;
    if (f === 0 || (f === 2 && y === 0)) {
      gray.set(raw.subarray(s, s + width), r);
    } else if (f === 1 || (f === 4 && y === 0)) {
      let a = 0;
      for (let x = 0; x < width; x++) a = gray[r + x] = (raw[s + x] + a) & 255;
    } else if (f === 2) {
      for (let x = 0; x < width; x++) gray[r + x] = (raw[s + x] + gray[up + x]) & 255;
    } else if (f === 3) {
      let a = 0;
      for (let x = 0; x < width; x++) {
        const b = y ? gray[up + x] : 0;
        a = gray[r + x] = (raw[s + x] + ((a + b) >> 1)) & 255;
      }
    } else if (f === 4) {
      let a = 0;
      let c = 0;
      for (let x = 0; x < width; x++) {
        const b = gray[up + x];
        const pa = b > c ? b - c : c - b;
        const pb = a > c ? a - c : c - a;
        const t = a + b - 2 * c;
        const pc = t < 0 ? -t : t;
        a = gray[r + x] = (raw[s + x] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)) & 255;
        c = b;
      }
    } else {
      return null;
    }
  }
  return { width, height, gray };
}
