// Evaluate a Python expression in the notebook's kernel, silently (no cell, no execution
// count): the execute reply's user_expressions entry, {status, data: {'text/plain': ...}}, or
// {status: 'error', ename, evalue} when the kernel does not answer within `timeoutMs`.
async ([path, expression, timeoutMs]) => {
  const kernel = kernelOf(findPanel(path));
  if (!kernel) return {status: 'error', ename: 'NoKernel', evalue: 'the notebook has no kernel'};
  const future = kernel.requestExecute({
    code: '', silent: true, store_history: false, user_expressions: {value: expression},
  });
  const timeout = new Promise((resolve) => setTimeout(() => resolve(null), timeoutMs));
  const reply = await Promise.race([future.done, timeout]);
  if (!reply) return {status: 'error', ename: 'Timeout', evalue: `no reply within ${timeoutMs} ms`};
  const found = reply.content.user_expressions;
  return found ? found.value : {status: 'error', ename: reply.content.ename, evalue: reply.content.evalue};
}
