// The notebook's kernel {name, id} once the notebook is open and its kernel idle, else null.
(path) => {
  const panel = findPanel(path);
  if (!panel || !panel.context.isReady) return null;
  const kernel = kernelOf(panel);
  return kernel && kernel.status === 'idle' ? {name: kernel.name, id: kernel.id} : null;
}
