// Prepended to every page script: the notebook panel open on `path`, found through
// window.jupyterapp (exposed by --LabApp.expose_app_in_browser).
const findPanel = (path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
  }
  return null;
};
const kernelOf = (panel) => panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
