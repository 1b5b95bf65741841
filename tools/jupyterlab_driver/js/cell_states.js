// Every code cell's state, read from the notebook model (JupyterLab 4 keeps only the cells in
// view in the DOM): executed or not, still running, error outputs, widget outputs.
([path, widgetMime]) => {
  const panel = findPanel(path);
  const kernel = kernelOf(panel);
  const cells = panel.content.model.cells;
  const state = {
    runAll: window.__dlRunAll === undefined ? null : window.__dlRunAll,
    kernel: kernel ? kernel.status : 'no kernel',
    codeCells: 0, executed: 0, running: [], unexecuted: [], errors: [], widgetCells: [],
  };
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    state.codeCells += 1;
    let running = cell.executionState === 'running';
    if (cell.executionState === undefined) {  // JupyterLab < 4.1: the prompt shows [*]
      const prompt = panel.content.widgets[i].node.querySelector('.jp-InputArea-prompt');
      running = !!prompt && prompt.textContent.includes('*');
    }
    if (running) state.running.push(i);
    if (cell.executionCount === null || cell.executionCount === undefined) state.unexecuted.push(i);
    else state.executed += 1;
    let widgets = 0;
    for (let k = 0; k < cell.outputs.length; k++) {
      const out = cell.outputs.get(k).toJSON();
      if (out.output_type === 'error') state.errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
      if (out.data && out.data[widgetMime]) widgets += 1;
    }
    if (widgets) state.widgetCells.push(i);
  }
  return state;
}
