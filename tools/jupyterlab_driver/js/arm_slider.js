// Arm a watch on the first slider in cell `index`: window.__dlWatch records when a key press
// reaches its handle (t0) and when a view next to it (an image or a text, in the same cell, or
// anywhere in the notebook if the cell has none) next changes (t1). Returns the key to press.
([path, index, handleSel]) => {
  const notebook = findPanel(path).content;
  const root = notebook.node;
  const cell = notebook.widgets[index].node;
  const handle = cell.querySelector(handleSel);
  if (!handle) return {ok: false, why: 'no slider handle'};
  const slider = handle.closest('.widget-slider');
  const outside = (el) => !el.closest('.widget-slider');
  const viewsIn = (scope) => {
    const imgs = Array.from(scope.querySelectorAll('.jupyter-widgets img')).filter(outside);
    const texts = Array.from(scope.querySelectorAll(
        '.widget-output, .widget-html, .widget-htmlmath, .widget-label, ' +
        '.widget-textarea textarea, .widget-text input'))
        .filter(outside);
    return {imgs, texts};
  };
  let scope = cell.querySelector('.jp-Cell-outputArea') || cell;
  let scopeName = 'cell';
  let views = viewsIn(scope);
  if (views.imgs.length + views.texts.length === 0) {
    scope = root; scopeName = 'notebook'; views = viewsIn(scope);
  }
  if (views.imgs.length + views.texts.length === 0) {
    return {ok: false, why: 'slider has no image or text view next to it'};
  }
  const describe = views.imgs.length ? `img (${scopeName})` : `text (${scopeName})`;
  const signature = () => {
    const v = viewsIn(scope);
    const text = (t) => (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA') ? t.value : t.textContent;
    return v.imgs.map((i) => i.getAttribute('src') || '').join('|') + '#' + v.texts.map(text).join('|');
  };
  const valueOf = () => handle.getAttribute('aria-valuenow') ||
      (slider.querySelector('.widget-readout') || {}).textContent || '';
  const w = {t0: null, t1: null, before: signature(), valueBefore: valueOf(), valueAfter: null};
  window.__dlWatch = w;
  document.addEventListener('keydown', (ev) => {
    if (w.t0 === null && ev.target === handle) w.t0 = performance.now();
  }, {capture: true, once: true});
  const check = () => {
    if (w.t1 !== null || w.t0 === null) return;
    if (signature() !== w.before) { w.t1 = performance.now(); w.valueAfter = valueOf(); }
  };
  const obs = new MutationObserver(check);
  obs.observe(scope, {subtree: true, childList: true, attributes: true, characterData: true});
  const poll = () => { check(); if (w.t1 === null) requestAnimationFrame(poll); else obs.disconnect(); };
  requestAnimationFrame(poll);
  root.querySelectorAll('[data-dl-slider]').forEach((el) => el.removeAttribute('data-dl-slider'));
  handle.setAttribute('data-dl-slider', '1');
  handle.scrollIntoView({block: 'center'});
  const now = Number(handle.getAttribute('aria-valuenow'));
  const max = Number(handle.getAttribute('aria-valuemax'));
  const atMax = handle.hasAttribute('aria-valuemax') && now >= max;
  return {ok: true, view: describe, key: atMax ? 'ArrowLeft' : 'ArrowRight'};
}
