/*
 * app.js: the router. The whole state of every view lives in the URL hash, so any view can be
 * pasted into a chat:
 *   #/graph?range=15m&ns=default&refresh=15&sel=node:<id>|edge:<source>><target>
 *   #/traces?service=&operation=&tags=&minDuration=&maxDuration=&errors=1&range=1h&limit=20&sort=
 *   #/trace/<traceID>?span=<spanID>
 * One module per view (graph.js, traces.js, trace.js); each exports mount(root, route) returning
 * {update(route) -> bool (false: remount), unmount()}.
 */
import { clearToken, hasToken } from './api.js';
import * as graphView from './graph.js';
import * as traceView from './trace.js';
import * as tracesView from './traces.js';
import { parseHash, stateBox, replace } from './util.js';

const views = { graph: graphView, traces: tracesView, trace: traceView };
const root = document.getElementById('view');
let current = null; /* {name, instance} */

function route() {
  const r = parseHash();
  const view = views[r.view];
  document.querySelectorAll('[data-nav]').forEach((a) => {
    a.classList.toggle('active', a.dataset.nav === r.view || (r.view === 'trace' && a.dataset.nav === 'traces'));
  });
  if (!view) {
    current?.instance.unmount();
    current = null;
    replace(root, stateBox('error', 'No such page', `"${r.view}" is not a dashboard page: try the graph.`));
    return;
  }
  if (current && current.name === r.view && current.instance.update(r)) return;
  current?.instance.unmount();
  replace(root);
  current = { name: r.view, instance: view.mount(root, r) };
}

/* "Forget token" shows while a bearer token is in use (api.js signals changes). */
const signout = document.getElementById('signout');
signout.addEventListener('click', (e) => {
  e.preventDefault();
  clearToken();
});
const showSignout = () => {
  signout.hidden = !hasToken();
};
window.addEventListener('meshscope:token', showSignout);
showSignout();

window.addEventListener('hashchange', route);
if (!location.hash) history.replaceState(null, '', '#/graph');
route();
