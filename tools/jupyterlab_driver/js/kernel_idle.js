// Whether the notebook's kernel is idle.
(path) => {
  const kernel = kernelOf(findPanel(path));
  return !!kernel && kernel.status === 'idle';
}
