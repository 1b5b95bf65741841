// Scroll cell `index` into view, then return each of its widget outputs as
// {index, mime, html}: mime is the output element's data-mime-type (set only when JupyterLab
// fell back to another renderer), html its inner HTML with image data left out.
async ([path, index, widgetMime]) => {
  const notebook = findPanel(path).content;
  const cell = notebook.widgets[index];
  if (notebook.scrollToItem) {
    await notebook.scrollToItem(index, 'center').catch(() => {});
  } else {
    cell.node.scrollIntoView({block: 'center'});
  }
  const children = cell.outputArea ? cell.outputArea.widgets : [];
  const outputs = [];
  for (let k = 0; k < cell.model.outputs.length; k++) {
    const out = cell.model.outputs.get(k).toJSON();
    if (!(out.data && out.data[widgetMime])) continue;
    const el = children[k] && children[k].node.querySelector('.jp-OutputArea-output');
    if (!el) { outputs.push({index: k, mime: null, html: null}); continue; }
    const copy = el.cloneNode(true);
    copy.querySelectorAll('img[src]').forEach((img) => img.setAttribute('src', ''));
    outputs.push({index: k, mime: el.getAttribute('data-mime-type'), html: copy.innerHTML});
  }
  return outputs;
}
