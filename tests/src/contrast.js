// WCAG 2.x AA colour contrast (1.4.3) of the page the browser shows, run as the body of a
// WebDriver "execute script" (so it ends in a `return`). Every visible element with text of its
// own (a non-blank direct text node) is checked: its text colour (`fill` for SVG text) blended
// over its effective background (the background colours of it and its ancestors composited up to
// the first opaque one, white if none) must reach 4.5:1, or 3:1 for large text (24px, or 18.66px
// bold). Elements over a background image (gradients) are skipped: their background cannot be
// computed. So are disabled controls (WCAG exempts them), hidden and aria-hidden content, and
// visually hidden (clipped to 1px) or off-page text. Returns one line per failure, at most 50.
const WHITE = { r: 255, g: 255, b: 255, a: 1 };

function parse(text) {
  const m = /^rgba?\(([^)]*)\)$/.exec((text || '').trim());
  if (!m) {
    return null;
  }
  const parts = m[1].split(/[\s,/]+/).filter((p) => p.length > 0);
  if (parts.length < 3) {
    return null;
  }
  const channel = (p) => (p.endsWith('%') ? (parseFloat(p) * 255) / 100 : parseFloat(p));
  const alpha = parts.length > 3 ? (parts[3].endsWith('%') ? parseFloat(parts[3]) / 100 : parseFloat(parts[3])) : 1;
  const c = { r: channel(parts[0]), g: channel(parts[1]), b: channel(parts[2]), a: alpha };
  return [c.r, c.g, c.b, c.a].some((v) => Number.isNaN(v)) ? null : c;
}

// `top` (any alpha) over the opaque `bottom`.
function over(top, bottom) {
  const a = Math.min(Math.max(top.a, 0), 1);
  const mix = (t, b) => t * a + b * (1 - a);
  return { r: mix(top.r, bottom.r), g: mix(top.g, bottom.g), b: mix(top.b, bottom.b), a: 1 };
}

function luminance(c) {
  const lin = (v) => {
    const s = v / 255;
    return s <= 0.03928 ? s / 12.92 : Math.pow((s + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);
}

function ratio(x, y) {
  const lx = luminance(x);
  const ly = luminance(y);
  return (Math.max(lx, ly) + 0.05) / (Math.min(lx, ly) + 0.05);
}

function rgb(c) {
  return 'rgb(' + Math.round(c.r) + ', ' + Math.round(c.g) + ', ' + Math.round(c.b) + ')';
}

// The composited background behind `start`'s content, or null over a background image.
function background(start) {
  const layers = [];
  for (let e = start; e; e = e.parentElement) {
    const s = getComputedStyle(e);
    if (s.backgroundImage && s.backgroundImage !== 'none') {
      return null;
    }
    const c = parse(s.backgroundColor);
    if (c && c.a > 0) {
      layers.push(c);
      if (c.a >= 1) {
        break;
      }
    }
  }
  let base = WHITE;
  for (let i = layers.length - 1; i >= 0; i--) {
    base = over(layers[i], base);
  }
  return base;
}

// The product of the opacities of `el` and its ancestors.
function opacity(el) {
  let o = 1;
  for (let e = el; e; e = e.parentElement) {
    const v = parseFloat(getComputedStyle(e).opacity);
    if (!Number.isNaN(v)) {
      o *= v;
    }
  }
  return o;
}

function describe(el) {
  let d = el.tagName.toLowerCase();
  if (el.id) {
    d += '#' + el.id;
  }
  const classes = (el.getAttribute('class') || '').trim();
  if (classes) {
    d += '.' + classes.split(/\s+/).join('.');
  }
  return d;
}

function ownText(el) {
  let text = '';
  for (const node of el.childNodes) {
    if (node.nodeType === Node.TEXT_NODE) {
      text += ' ' + node.nodeValue;
    }
  }
  return text.replace(/\s+/g, ' ').trim();
}

// Inside a closed <details>, anywhere but its summary.
function insideClosedDetails(el) {
  for (let d = el.closest('details:not([open])'); d; d = d.parentElement && d.parentElement.closest('details:not([open])')) {
    const summary = d.querySelector(':scope > summary');
    if (!summary || !summary.contains(el)) {
      return true;
    }
  }
  return false;
}

const SKIP = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'OPTION', 'OPTGROUP']);
const failures = new Set();
const elements = [document.body, ...document.body.querySelectorAll('*')];
for (const el of elements) {
  if (failures.size >= 50) {
    break;
  }
  const svg = el instanceof SVGElement;
  // SVG: only text content elements draw text (not <title>, <desc>, <style>).
  if (svg ? !(el instanceof SVGTextContentElement) : SKIP.has(el.tagName)) {
    continue;
  }
  const text = ownText(el);
  if (!text) {
    continue;
  }
  const style = getComputedStyle(el);
  if (style.visibility !== 'visible' || style.display === 'none') {
    continue;
  }
  // Not rendered: under display: none or content-visibility: hidden (a closed <details>).
  if (el.checkVisibility && !el.checkVisibility()) {
    continue;
  }
  if (insideClosedDetails(el)) {
    continue;
  }
  if (!svg && el !== document.body && el.offsetParent === null && style.position !== 'fixed') {
    continue;
  }
  const box = el.getBoundingClientRect();
  // Visually hidden (clipped to a pixel), or placed off the page (a skip link until focused).
  if (box.width <= 1 || box.height <= 1) {
    continue;
  }
  if (box.right + window.scrollX <= 0 || box.bottom + window.scrollY <= 0) {
    continue;
  }
  if (el.closest('[aria-hidden="true"]') || el.closest(':disabled, [aria-disabled="true"]')) {
    continue;
  }
  const alpha = opacity(el);
  if (alpha <= 0) {
    continue;
  }
  let ink;
  let behind;
  let size = parseFloat(style.fontSize);
  if (svg) {
    ink = parse(style.fill);
    const fillOpacity = parseFloat(style.fillOpacity);
    if (ink && !Number.isNaN(fillOpacity)) {
      ink.a *= fillOpacity;
    }
    // The outermost <svg> (its CSS background is painted) and the HTML behind it; shapes drawn
    // under the text inside the picture are not considered.
    let root = el;
    while (root.parentElement instanceof SVGElement) {
      root = root.parentElement;
    }
    behind = background(root);
    // SVG text is scaled with its picture (viewBox): the size on screen is what counts.
    const ctm = el.getScreenCTM ? el.getScreenCTM() : null;
    if (ctm) {
      size *= Math.sqrt(Math.abs(ctm.a * ctm.d - ctm.b * ctm.c));
    }
  } else {
    ink = parse(style.color);
    behind = background(el);
  }
  if (!ink || !behind) {
    continue;
  }
  ink.a *= alpha;
  if (ink.a <= 0) {
    continue;
  }
  const shown = over(ink, behind);
  const weight = style.fontWeight === 'bold' ? 700 : parseFloat(style.fontWeight) || 400;
  const large = size >= 24 || (size >= 18.66 && weight >= 700);
  const required = large ? 3 : 4.5;
  const contrast = ratio(shown, behind);
  if (contrast < required) {
    failures.add(
      '<' + describe(el) + "> '" + text.slice(0, 40) + "': " + contrast.toFixed(2) + ' < ' +
        required.toFixed(1) + ' (' + rgb(shown) + ' on ' + rgb(behind) + ')',
    );
  }
}
return [...failures].slice(0, 50);
