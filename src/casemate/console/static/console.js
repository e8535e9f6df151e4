// Casemate console: one page, hash routes, DOM built from text nodes only (never innerHTML).
'use strict';
(function () {
  const API = '/console/api';
  const LEVELS = ['NP', 'DR', 'S', 'TS'];
  const T = {
    fr: {
      skip: 'Aller au contenu', 'nav.catalog': 'Catalogue', 'nav.upload': 'Téléverser', 'nav.chat': 'Assistant',
      'nav.jobs': 'Tâches', 'nav.tokens': 'Jetons', 'nav.audit': "Journal d'audit", 'nav.users': 'Utilisateurs',
      logout: 'Se déconnecter', 'login.title': 'Connexion', 'login.user': "Nom d'utilisateur",
      'login.password': 'Mot de passe', 'login.submit': 'Se connecter', lang: 'English',
      kind: 'Type', any: '(tous)', label: 'Classification', name: 'Nom', since: 'Depuis', until: "Jusqu'au",
      text: 'Texte', search: 'Rechercher', next: 'Page suivante', created: 'Créé le', by: 'Par', size: 'Taille',
      none: 'Aucun élément.', metadata: 'Métadonnées', content: 'Contenu', download: 'Télécharger',
      lineage: 'Filiation', derived: 'Dérivés', declassify: 'Déclassifier', to: 'Nouvelle classification',
      reason: 'Motif', transcript: 'Transcription', transcribe: 'Transcrire', map: 'Voir les détections sur la carte',
      image: 'Image', upload: 'Téléverser', files: 'Fichiers', drop: 'Déposez des fichiers ici ou choisissez-les',
      labelRequired: 'Choisissez une classification', question: 'Question', send: 'Envoyer', citations: 'Sources',
      answerLabel: 'Classification de la réponse', jobs: 'Tâches', state: 'État', progress: 'Avancement',
      result: 'Résultat', verify: "Vérifier l'intégrité", entries: 'Entrées', actor: 'Acteur', action: 'Action',
      target: 'Cible', users: 'Utilisateurs', clearance: 'Habilitation', roles: 'Rôles', password: 'Mot de passe',
      addUser: 'Ajouter', tokens: 'Jetons', note: 'Note', forUser: 'Pour (utilisateur)', createToken: 'Créer un jeton',
      tokenShown: 'Copiez ce jeton maintenant : il ne sera plus affiché.', revoke: 'Révoquer', revoked: 'révoqué',
      detect: 'Détecter', 'nav.pack': 'Essaim', scenario: 'Scénario', seed: 'Graine', run: 'Lancer', replay: 'Rejeu',
      results: 'Résultats', findings: 'Constats', missionId: 'ou mission (id)',
      classes: 'Classes', level: 'Niveau DRI', all: '(tous)', detection: 'Détection', provenance: 'Provenance',
      score: 'Score', drawn: 'détections affichées', clickHint: 'Cliquez une détection pour la voir.',
      verifyOk: 'Journal intègre', verifyBad: 'Journal altéré', open: 'Ouvrir', noText: 'Pas de texte extrait.',
      declassified: 'Déclassifié : nouvelle version', done: 'terminé', failed: 'échec', running: 'en cours',
      queued: 'en attente', skipped: 'inchangé (déjà présent)', ok: 'ajouté', disable: 'Désactiver',
      'nav.compare': 'Comparer', 'nav.models': 'Modèles', compare: 'Comparer deux dates', before: 'Avant (détections ou image)',
      after: 'Après (détections ou image)', zones: 'Zones (GeoJSON, facultatif)', noZones: '(aucune)', compareRun: 'Comparer',
      change: 'Changement', zone: 'Zone', appeared: 'Apparus', departed: 'Partis', moved: 'Déplacés', unchanged: 'Inchangés',
      alerts: 'Alertes', delta: 'Écart', threshold: 'Seuil', noAlert: 'Aucune alerte.', perZone: 'Par zone et par classe',
      plan: 'Planifier une mission depuis des détections', detections: 'Détections', wanted: 'Niveau voulu',
      robots: 'Robots (TYPE:NOMBRE)', approveClasses: 'Classes soumises à approbation (séparées par des virgules)',
      duration: 'Durée simulée (s)', planRun: 'Planifier', missions: 'Missions', mission: 'Mission', tasks: 'Tâches de la mission',
      task: 'Tâche', marked: 'Approbation', decision: 'Décision', approve: 'Approuver', reject: 'Rejeter', needed: 'requise',
      notNeeded: 'non requise', approved: 'approuvée', rejected: 'rejetée', pending: 'en attente', runs: 'Exécutions',
      runMission: 'Exécuter la mission', metrics: 'Mesures', play: 'Lecture', pause: 'Pause', frame: 'Image',
      datasets: "Jeux de données", images: 'Images', objects: 'Objets', trainJobs: "Entraînements", models: 'Modèles',
      aliases: 'Alias', promote: 'Promouvoir', alias: 'Alias', gate: 'Jeu de contrôle (facultatif)', noGate: '(aucun)',
      train: 'Entraîner', epochs: 'Époques', promoted: 'Promu', cancel: 'Annuler', taxonomy: 'Classes', run_: 'Exécution',
      gates: 'Tâches (état)', openRun: 'Voir les résultats et le rejeu', colBefore: 'Avant', colAfter: 'Après', searching: 'Recherche en cours…', alertAt: "Seuil d'alerte par zone (facultatif)", pace: 'Cadence (s simulées par seconde, facultatif : décisions prises pendant l’exécution)',
    },
    en: {
      skip: 'Skip to content', 'nav.catalog': 'Catalog', 'nav.upload': 'Upload', 'nav.chat': 'Assistant',
      'nav.jobs': 'Jobs', 'nav.tokens': 'Tokens', 'nav.audit': 'Audit log', 'nav.users': 'Users',
      logout: 'Sign out', 'login.title': 'Sign in', 'login.user': 'User name', 'login.password': 'Password',
      'login.submit': 'Sign in', lang: 'Français',
      kind: 'Kind', any: '(any)', label: 'Classification', name: 'Name', since: 'Since', until: 'Until',
      text: 'Text', search: 'Search', next: 'Next page', created: 'Created', by: 'By', size: 'Size',
      none: 'Nothing here.', metadata: 'Metadata', content: 'Content', download: 'Download',
      lineage: 'Lineage', derived: 'Derived', declassify: 'Declassify', to: 'New classification',
      reason: 'Reason', transcript: 'Transcript', transcribe: 'Transcribe', map: 'See detections on the map',
      image: 'Image', upload: 'Upload', files: 'Files', drop: 'Drop files here or choose them',
      labelRequired: 'Choose a classification', question: 'Question', send: 'Send', citations: 'Sources',
      answerLabel: "Answer's classification", jobs: 'Jobs', state: 'State', progress: 'Progress',
      result: 'Result', verify: 'Verify integrity', entries: 'Entries', actor: 'Actor', action: 'Action',
      target: 'Target', users: 'Users', clearance: 'Clearance', roles: 'Roles', password: 'Password',
      addUser: 'Add', tokens: 'Tokens', note: 'Note', forUser: 'For (user)', createToken: 'Create a token',
      tokenShown: 'Copy this token now: it will not be shown again.', revoke: 'Revoke', revoked: 'revoked',
      detect: 'Detect', 'nav.pack': 'Robot pack', scenario: 'Scenario', seed: 'Seed', run: 'Run', replay: 'Replay',
      results: 'Results', findings: 'Findings', missionId: 'or mission (id)',
      classes: 'Classes', level: 'DRI level', all: '(all)', detection: 'Detection', provenance: 'Provenance',
      score: 'Score', drawn: 'detections drawn', clickHint: 'Click a detection to see it.',
      verifyOk: 'Log intact', verifyBad: 'Log tampered', open: 'Open', noText: 'No extracted text.',
      declassified: 'Declassified: new version', done: 'done', failed: 'failed', running: 'running',
      queued: 'queued', skipped: 'unchanged (already there)', ok: 'added', disable: 'Disable',
      'nav.compare': 'Compare', 'nav.models': 'Models', compare: 'Compare two dates', before: 'Before (detections or image)',
      after: 'After (detections or image)', zones: 'Zones (GeoJSON, optional)', noZones: '(none)', compareRun: 'Compare',
      change: 'Change', zone: 'Zone', appeared: 'Appeared', departed: 'Departed', moved: 'Moved', unchanged: 'Unchanged',
      alerts: 'Alerts', delta: 'Delta', threshold: 'Threshold', noAlert: 'No alert.', perZone: 'Per zone and class',
      plan: 'Plan a mission from detections', detections: 'Detections', wanted: 'Wanted level',
      robots: 'Robots (TYPE:COUNT)', approveClasses: 'Classes that need approval (comma separated)',
      duration: 'Simulated duration (s)', planRun: 'Plan', missions: 'Missions', mission: 'Mission', tasks: "Mission's tasks",
      task: 'Task', marked: 'Approval', decision: 'Decision', approve: 'Approve', reject: 'Reject', needed: 'needed',
      notNeeded: 'not needed', approved: 'approved', rejected: 'rejected', pending: 'pending', runs: 'Runs',
      runMission: 'Run the mission', metrics: 'Metrics', play: 'Play', pause: 'Pause', frame: 'Frame',
      datasets: 'Datasets', images: 'Images', objects: 'Objects', trainJobs: 'Training jobs', models: 'Models',
      aliases: 'Aliases', promote: 'Promote', alias: 'Alias', gate: 'Gate dataset (optional)', noGate: '(none)',
      train: 'Train', epochs: 'Epochs', promoted: 'Promoted', cancel: 'Cancel', taxonomy: 'Classes', run_: 'Run',
      gates: 'Tasks (state)', openRun: 'See the results and the replay', colBefore: 'Before', colAfter: 'After', searching: 'Searching…', alertAt: 'Alert threshold per zone (optional)', pace: 'Pace (simulated s per second, optional: decisions taken during the run)',
    },
  };
  const KINDS = ['document', 'image', 'audio', 'telemetry', 'other', 'detections', 'transcript', 'conversation',
    'mission', 'model', 'index', 'annotation', 'dataset', 'evaluation', 'finding', 'change'];
  let lang = localStorage.getItem('cm-lang') || 'fr';
  let me = null;
  let pageLabels = [];
  let mapObj = null;
  const $ = (id) => document.getElementById(id);
  const t = (k) => (T[lang][k] || T.fr[k] || k);

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of kids.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const field = (id, labelKey, input) => h('div', {}, h('label', {for: id, text: t(labelKey)}), input);

  // -- labels and the banner -------------------------------------------------------------------
  function parseLabel(s) {
    const [lvl, comps] = String(s || 'NP').split('//');
    return {level: Math.max(0, LEVELS.indexOf(lvl)), comps: comps ? comps.split('/').filter(Boolean) : []};
  }
  function lubLabels(list) {
    let level = 0; const comps = new Set();
    for (const s of list) { const p = parseLabel(s); level = Math.max(level, p.level); p.comps.forEach((c) => comps.add(c)); }
    return LEVELS[level] + (comps.size ? '//' + [...comps].sort().join('/') : '');
  }
  function levelClass(label) { return 'level-' + LEVELS[parseLabel(label).level]; }
  function showLabel(label, display) {
    return h('span', {class: 'tag ' + levelClass(label), 'data-label': label,
      text: display && display !== label ? `${display} (${label})` : label});
  }
  const DISPLAY = {fr: {NP: 'Non Protégé', DR: 'Diffusion Restreinte', S: 'Secret', TS: 'Très Secret'},
    en: {NP: 'Unclassified (NP)', DR: 'Restricted (DR)', S: 'Secret', TS: 'Top Secret'}};
  function raise(labels) {
    pageLabels = pageLabels.concat(labels.filter(Boolean));
    const top = lubLabels(pageLabels);
    const p = parseLabel(top);
    const text = `${DISPLAY[lang][LEVELS[p.level]]}${p.comps.length ? ' // ' + p.comps.join(' / ') : ''} — ${top}`;
    for (const id of ['banner-top', 'banner-bottom']) {
      const b = $(id); b.className = 'banner ' + levelClass(top); b.textContent = text; b.dataset.label = top;
    }
  }
  function resetBanner() { pageLabels = []; raise(['NP']); }

  // -- calls ---------------------------------------------------------------------------------------
  async function call(method, path, body, raw) {
    const opts = {method, headers: {}, credentials: 'same-origin'};
    if (me && method !== 'GET') opts.headers['X-CSRF-Token'] = me.csrf;
    if (body instanceof FormData) opts.body = body;
    else if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
    const r = await fetch(API + path, opts);
    if (raw) return r;
    const data = await r.json().catch(() => ({error: {message: `HTTP ${r.status}`}}));
    if (r.status === 401 && path !== '/login') { me = null; showLogin(); }
    if (!r.ok) { const e = new Error(data.error ? data.error.message : `HTTP ${r.status}`); e.status = r.status; throw e; }
    return data;
  }
  function fail(e) { $('error').textContent = e.message || String(e); document.body.dataset.state = 'error'; }

  // -- i18n ----------------------------------------------------------------------------------------
  function applyLang() {
    document.documentElement.lang = lang;
    document.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $('lang').textContent = t('lang');
  }

  // -- session -------------------------------------------------------------------------------------
  function showLogin() {
    $('topbar').hidden = true; $('view').hidden = true; $('login-view').hidden = false;
    resetBanner(); document.body.dataset.state = 'login'; $('username').focus();
  }
  async function start() {
    applyLang();
    $('lang').addEventListener('click', () => { lang = lang === 'fr' ? 'en' : 'fr'; localStorage.setItem('cm-lang', lang); applyLang(); if (me) route(); });
    $('logout').addEventListener('click', async () => { await call('POST', '/logout').catch(() => {}); me = null; showLogin(); });
    $('login-form').addEventListener('submit', async (ev) => {
      ev.preventDefault(); $('login-error').textContent = '';
      try {
        me = await call('POST', '/login', {username: $('username').value, password: $('password').value});
        $('password').value = ''; signedIn();
      } catch (e) { $('login-error').textContent = e.message; }
    });
    window.addEventListener('hashchange', () => { if (me) route(); });
    try { me = await call('GET', '/session'); signedIn(); } catch (e) { showLogin(); }
  }
  function signedIn() {
    $('login-view').hidden = true; $('topbar').hidden = false; $('view').hidden = false;
    $('whoami').replaceChildren(me.user + ' ', showLabel(me.clearance, me.clearance_display));
    document.querySelectorAll('[data-role]').forEach((el) => { el.hidden = !me.roles.includes(el.dataset.role); });
    if (!location.hash || location.hash === '#') location.hash = '#/catalog'; else route();
  }

  // -- router --------------------------------------------------------------------------------------
  const ROUTES = {catalog: catalogView, item: itemView, upload: uploadView, chat: chatView, map: mapView,
    jobs: jobsView, pack: packView, audit: auditView, users: usersView, tokens: tokensView, compare: compareView,
    change: changeView, mission: missionView, run: runView, models: modelsView};
  const NAV_OF = {item: 'catalog', map: 'catalog', change: 'compare', mission: 'pack', run: 'pack'};
  async function route() {
    const [path, query] = location.hash.slice(2).split('?');
    const [name, arg] = path.split('/');
    const params = new URLSearchParams(query || '');
    if (mapObj) { mapObj.setTarget(null); mapObj = null; }
    delete document.body.dataset.map; delete document.body.dataset.mapMs;
    $('error').textContent = ''; resetBanner();
    document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.getAttribute('href') === '#/' + (NAV_OF[name] || name)));
    const view = $('view'); view.replaceChildren();
    document.body.dataset.state = 'loading'; document.body.dataset.view = name;
    const t0 = performance.now();
    try {
      await (ROUTES[name] || catalogView)(view, arg ? decodeURIComponent(arg) : null, params);
      // the page's own clock, from the route change to everything drawn (benchmarks read it)
      document.body.dataset.routeMs = String(Math.round(performance.now() - t0));
      if (document.body.dataset.state === 'loading') document.body.dataset.state = 'ready';
    } catch (e) { fail(e); }
    const h1 = view.querySelector('h1'); if (h1) { h1.tabIndex = -1; }
  }

  // -- catalog -------------------------------------------------------------------------------------
  async function catalogView(view, _arg, params) {
    const sel = h('select', {id: 'f-kind', name: 'kind'}, h('option', {value: '', text: t('any')}),
      KINDS.map((k) => h('option', {value: k, text: k, selected: params.get('kind') === k})));
    const inp = (id, key, type) => h('input', {id: 'f-' + id, name: id, type: type || 'text', value: params.get(id) || ''});
    const form = h('form', {class: 'inline', id: 'filters'},
      field('f-kind', 'kind', sel), field('f-label', 'label', inp('label', 'label')), field('f-name', 'name', inp('name')),
      field('f-since', 'since', inp('since', 'since', 'date')), field('f-until', 'until', inp('until', 'until', 'date')),
      field('f-q', 'text', inp('q')), h('button', {type: 'submit', id: 'f-submit', text: t('search')}));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const p = new URLSearchParams();
      for (const k of ['kind', 'label', 'name', 'since', 'until', 'q']) { const v = $('f-' + k).value.trim(); if (v) p.set(k, v); }
      location.hash = '#/catalog?' + p.toString();
    });
    const tbody = h('tbody', {id: 'rows'});
    const more = h('button', {type: 'button', id: 'more', class: 'secondary', hidden: true, text: t('next')});
    view.append(h('h1', {text: t('nav.catalog')}), form,
      h('table', {}, h('thead', {}, h('tr', {}, [t('label'), t('name'), t('kind'), t('created'), t('by')].map((x) => h('th', {text: x})))), tbody), more);
    let cursor = null, shown = 0, auto = 0;
    async function load() {
      const q = new URLSearchParams(params); if (cursor) q.set('before', cursor);
      const data = await call('GET', '/items?' + q.toString());
      if (!document.body.contains(tbody)) return;  // the user went elsewhere meanwhile
      raise([data.label]);
      const placeholder = $('none-row'); if (placeholder) placeholder.remove();
      for (const v of data.items) {
        tbody.append(h('tr', {'data-id': v.id, class: 'row'}, h('td', {}, showLabel(v.label, v.label_display)),
          h('td', {}, h('a', {href: '#/item/' + encodeURIComponent(v.id), text: v.name})), h('td', {text: v.kind}),
          h('td', {text: v.created_at.slice(0, 19).replace('T', ' ')}), h('td', {text: v.created_by})));
        shown++;
      }
      cursor = data.next; more.hidden = !cursor;
      if (!shown) tbody.append(h('tr', {id: 'none-row'}, h('td', {colspan: 5, text: cursor ? t('searching') : t('none')})));
      // a sparse filter reads the catalog one window of versions per call: go on by itself while the
      // page is short (the rows found so far are already shown)
      if (cursor && shown < 50 && auto < 10) {
        auto++; document.body.dataset.searching = '1'; setTimeout(() => load().catch(fail), 0);
      } else delete document.body.dataset.searching;
    }
    more.addEventListener('click', () => load().catch(fail));
    await load();
  }

  async function itemView(view, id, params) {
    const data = await call('GET', '/items/' + encodeURIComponent(id));
    const v = data.item;
    raise([data.label]);
    view.append(h('h1', {id: 'item-name'}, showLabel(v.label, v.label_display), ' ', v.name));
    view.append(h('div', {class: 'card'}, h('h2', {text: t('metadata')}), h('table', {id: 'meta'},
      [['id', v.id], [t('kind'), v.kind], [t('label'), v.label], [t('created'), v.created_at], [t('by'), v.created_by],
        [t('size'), v.size + ' B'], ['sha256', v.sha256]].map(([k, x]) => h('tr', {}, h('th', {text: k}), h('td', {text: x})))),
    h('p', {}, h('a', {href: API + '/items/' + encodeURIComponent(v.id) + '/content', id: 'download', text: t('download')}))));
    const role = (v.metadata || {}).role;
    const page = v.kind === 'change' ? ['#/change/', 'change'] : v.kind === 'mission' && role === 'plan' ? ['#/mission/', 'mission']
      : v.kind === 'mission' && role === 'results' ? ['#/run/', 'run_'] : null;
    if (page) view.append(h('p', {}, h('a', {id: 'to-page', href: page[0] + encodeURIComponent(v.id), text: t(page[1])})));
    if (v.kind === 'image') {
      const img = h('img', {id: 'image', alt: v.name, src: API + '/items/' + encodeURIComponent(v.id) + '/render.png', class: 'preview'});
      view.append(h('div', {class: 'card'}, h('h2', {text: t('image')}), img,
        data.children.some((c) => c.kind === 'detections') ? h('p', {}, h('a', {id: 'to-map', href: '#/map/' + encodeURIComponent(v.id), text: t('map')})) : null,
        detectButton(v)));
    }
    if (v.kind === 'audio' || v.kind === 'transcript' || (v.kind === 'other' && /\.(mp4|webm)$/i.test(v.name))) await audioPart(view, v, data, params);
    if (['document', 'transcript', 'conversation', 'other', 'finding'].includes(v.kind)) {
      const td = await call('GET', '/items/' + encodeURIComponent(v.id) + '/text');
      const pre = h('pre', {class: 'text', id: 'text', tabindex: 0});
      const hl = sessionStorage.getItem('cm-hl:' + v.id);
      highlight(pre, td.text || t('noText'), params.get('hl') === '1' ? hl : null);
      view.append(h('div', {class: 'card'}, h('h2', {text: t('content')}), pre));
      const m = pre.querySelector('mark'); if (m) m.scrollIntoView({block: 'center'});
    }
    if (data.children.length) {
      view.append(h('div', {class: 'card'}, h('h2', {text: t('derived')}), h('ul', {id: 'children'},
        data.children.map((c) => h('li', {}, showLabel(c.label, c.label_display), ' ', h('a', {href: '#/item/' + encodeURIComponent(c.id), text: c.name}), ` (${c.kind})`)))));
      raise(data.children.map((c) => c.label));
    }
    const lin = await call('GET', '/items/' + encodeURIComponent(v.id) + '/lineage');
    raise([lin.label]);
    const node = (n) => h('li', {'data-id': n.id}, showLabel(n.label), ' ', h('a', {href: '#/item/' + encodeURIComponent(n.id), text: n.name}), ` (${n.kind})`,
      n.parents.length ? h('ul', {}, n.parents.map(node)) : null);
    view.append(h('div', {class: 'card lineage'}, h('h2', {text: t('lineage')}), h('ul', {id: 'lineage'}, node(lin.lineage))));
    if (me.roles.includes('officer')) {
      const to = h('select', {id: 'declass-to'}, LEVELS.slice(0, parseLabel(v.label).level + 1).reverse().map((l) => h('option', {value: l, text: l})));
      const reason = h('input', {id: 'declass-reason', required: true});
      const out = h('p', {id: 'declass-result', role: 'status'});
      const f = h('form', {class: 'inline', id: 'declass-form'}, field('declass-to', 'to', to), field('declass-reason', 'reason', reason),
        h('button', {type: 'submit', id: 'declass-button', text: t('declassify')}), out);
      f.addEventListener('submit', async (ev) => {
        ev.preventDefault(); out.textContent = '';
        try {
          const r = await call('POST', '/items/' + encodeURIComponent(v.id) + '/declassify', {to: to.value, reason: reason.value});
          out.replaceChildren(t('declassified') + ' ', showLabel(r.item.label), ' ', h('a', {href: '#/item/' + encodeURIComponent(r.item.id), id: 'declass-new', text: r.item.id}));
          out.className = 'ok';
        } catch (e) { out.textContent = e.message; out.className = 'error'; }
      });
      view.append(h('div', {class: 'card'}, h('h2', {text: t('declassify')}), f));
    }
  }

  function detectButton(v) {
    const out = h('p', {id: 'detect-status', role: 'status'});
    const btn = h('button', {type: 'button', id: 'detect', text: t('detect')});
    btn.addEventListener('click', async () => {
      try { const r = await call('POST', '/items/' + encodeURIComponent(v.id) + '/detect', {}); await watchJob(r.job, out); route(); } catch (e) { out.textContent = e.message; }
    });
    return h('div', {}, btn, out);
  }

  async function packView(view) {
    const data = await call('GET', '/pack/scenarios');
    const dets = await call('GET', '/items?kind=detections&limit=200');
    const ms = await call('GET', '/pack/missions');
    raise(dets.items.map((v) => v.label).concat([ms.label]));
    view.append(h('h1', {text: t('nav.pack')}));
    // plan a mission from stored detections
    const pdet = h('select', {id: 'plan-detections', required: true}, dets.items.map(itemOption));
    const level = h('select', {id: 'plan-level'}, ['I', 'R', 'D'].map((l) => h('option', {value: l, text: l})));
    const robots = h('input', {id: 'plan-robots', value: 'quadcopter:4'});
    const approve = h('input', {id: 'plan-approve', placeholder: 'vehicle, ship'});
    const duration = h('input', {id: 'plan-duration', type: 'number', min: 1, value: 900});
    const pout = h('div', {id: 'plan-status', role: 'status'});
    const pf = h('form', {class: 'inline', id: 'plan-form'}, field('plan-detections', 'detections', pdet), field('plan-level', 'wanted', level),
      field('plan-robots', 'robots', robots), field('plan-approve', 'approveClasses', approve), field('plan-duration', 'duration', duration),
      h('button', {type: 'submit', id: 'plan-button', text: t('planRun')}));
    pf.addEventListener('submit', async (ev) => {
      ev.preventDefault(); pout.replaceChildren();
      try {
        const classes = approve.value.split(',').map((x) => x.trim()).filter(Boolean);
        const r = await call('POST', '/pack/plans', {detections: pdet.value, level: level.value, robots: robots.value.trim(),
          approve_classes: classes, duration: Number(duration.value) || 900});
        location.hash = '#/mission/' + enc(r.mission.id);
      } catch (e) { pout.append(h('p', {class: 'error', id: 'plan-error', text: e.message})); document.body.dataset.state = 'plan-error'; }
    });
    view.append(h('div', {class: 'card'}, h('h2', {text: t('plan')}), pf, pout));
    view.append(h('div', {class: 'card'}, h('h2', {text: t('missions')}), h('table', {id: 'missions'},
      headRow([t('label'), t('name'), t('tasks'), t('created'), t('by')]),
      h('tbody', {}, ms.missions.map((m) => h('tr', {'data-id': m.id}, h('td', {}, showLabel(m.label, m.label_display)),
        h('td', {}, h('a', {href: '#/mission/' + enc(m.id), text: m.name})), h('td', {text: (m.metadata || {}).tasks ?? '—'}),
        h('td', {text: m.created_at.slice(0, 19).replace('T', ' ')}), h('td', {text: m.created_by})))))));
    // a built-in scenario, or a stored mission by id
    const sel = h('select', {id: 'pack-scenario'}, data.scenarios.map((x) => h('option', {value: x, text: x})));
    const mission = h('input', {id: 'pack-mission', placeholder: 'id'});
    const seed = h('input', {id: 'pack-seed', type: 'number', value: '0', min: '0'});
    const out = h('div', {id: 'pack-status', role: 'status'});
    const f = h('form', {class: 'inline', id: 'pack-form'}, field('pack-scenario', 'scenario', sel),
      field('pack-mission', 'missionId', mission), field('pack-seed', 'seed', seed), h('button', {type: 'submit', id: 'pack-run', text: t('run')}));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const r = await call('POST', '/pack/runs', {mission: mission.value.trim() || sel.value, seed: Number(seed.value) || 0});
        const job = await watchJob(r.job, out);
        const res = job.result;
        const link = (id, key) => id ? h('li', {}, t(key) + ' : ', h('a', {href: '#/item/' + enc(id), text: id})) : null;
        out.append(h('ul', {id: 'pack-results'}, res.item ? h('li', {}, h('a', {href: '#/run/' + enc(res.item), id: 'open-run', text: t('openRun')})) : null,
          link(res.item, 'results'), (res.findings || []).map((x) => link(x, 'findings')),
          h('li', {text: Object.entries(res.metrics || {}).map(([k, x]) => `${k}: ${x}`).join(' · ')})));
        document.body.dataset.state = 'pack-done';
      } catch (e) { out.textContent = e.message; }
    });
    view.append(h('div', {class: 'card'}, h('h2', {text: t('run')}), f, out));
  }

  function highlight(pre, text, snippet) {
    let at = -1, len = 0;
    if (snippet) {
      const probe = snippet.replace(/\s+/g, ' ').trim().slice(0, 80);
      const flat = text.replace(/\s/g, ' ');
      at = flat.indexOf(probe);
      if (at < 0) { const p2 = probe.slice(0, 30); at = flat.indexOf(p2); len = at >= 0 ? Math.min(snippet.length, text.length - at) : 0; } else len = Math.min(snippet.length, text.length - at);
    }
    if (at < 0) { pre.textContent = text; return; }
    pre.replaceChildren(text.slice(0, at), h('mark', {id: 'hl', text: text.slice(at, at + len)}), text.slice(at + len));
  }

  async function audioPart(view, v, data, params) {
    let tr = null;
    try { tr = await call('GET', '/items/' + encodeURIComponent(v.id) + '/transcript'); } catch (e) { if (e.status !== 404) throw e; }
    const audioId = v.kind === 'transcript' ? (tr && tr.audio) : v.id;
    const card = h('div', {class: 'card'}, h('h2', {text: t('transcript')}));
    let player = null;
    if (audioId) {
      player = h('audio', {id: 'player', controls: true, preload: 'auto', src: API + '/items/' + encodeURIComponent(audioId) + '/content'});
      card.append(player);
    }
    if (tr) {
      raise([tr.label]);
      const list = h('ol', {class: 'segments', id: 'segments'}, tr.segments.map((s, i) => {
        const li = h('li', {tabindex: 0, role: 'button', 'data-start': s.start, 'data-i': i}, `[${fmt(s.start)}–${fmt(s.end)}] `, s.text);
        const go = () => { if (player) { player.currentTime = s.start; player.play().catch(() => {}); } list.querySelectorAll('li').forEach((x) => x.classList.toggle('playing', x === li)); };
        li.addEventListener('click', go);
        li.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); go(); } });
        return li;
      }));
      card.append(list);
      const at = parseFloat(params.get('t'));
      if (player && !isNaN(at)) player.currentTime = at;
    } else if (v.kind !== 'transcript') {
      const out = h('p', {id: 'transcribe-status', role: 'status'});
      const btn = h('button', {type: 'button', id: 'transcribe', text: t('transcribe')});
      btn.addEventListener('click', async () => {
        try { const r = await call('POST', '/items/' + encodeURIComponent(v.id) + '/transcribe', {}); await watchJob(r.job, out); route(); } catch (e) { out.textContent = e.message; }
      });
      card.append(btn, out);
    }
    view.append(card);
  }
  const fmt = (s) => { s = Math.floor(Number(s) || 0); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`; };

  async function watchJob(job, out) {
    const bar = h('progress', {max: 1, value: job.progress, id: 'job-progress'});
    out.replaceChildren(bar, ' ', t(job.state));
    while (job.state === 'queued' || job.state === 'running') {
      await new Promise((r) => setTimeout(r, 400));
      job = (await call('GET', '/jobs/' + job.id)).job;
      bar.value = job.progress; out.replaceChildren(bar, ' ', t(job.state), job.error ? ': ' + job.error : '');
    }
    if (job.state === 'failed') throw new Error(job.error);
    return job;
  }

  // -- map -----------------------------------------------------------------------------------------
  const PALETTE = ['#e6194b', '#3cb44b', '#ffe119', '#4363d8', '#f58231', '#911eb4', '#46f0f0', '#f032e6', '#bcf60c', '#fabebe', '#008080', '#e6beff'];
  const LEVEL_STROKE = ['#ffffff', '#ffeb3b', '#00e5ff'];  // D, R, I; none: grey
  const CHANGE_COLOURS = {appeared: '#3cb44b', departed: '#e6194b', moved: '#f58231'};
  async function mapView(view, id) {
    const t0 = performance.now();
    const det = await call('GET', '/items/' + encodeURIComponent(id) + '/detections?format=compact');
    document.body.dataset.fetchMs = String(Math.round(performance.now() - t0));
    raise([det.label]);
    const img = det.image; const W = det.width, H = det.height;
    // a change layer: appeared green, departed red, moved orange, whatever the class
    const colour = (c) => CHANGE_COLOURS[String(det.classes[c]).split(' ')[0]] || PALETTE[c % PALETTE.length];
    view.append(h('h1', {}, showLabel(det.label, det.label_display), ' ', img ? img.name : det.layer.name));
    const classBoxes = h('fieldset', {id: 'class-filter'}, h('legend', {text: t('classes')}), det.classes.map((c, i) => {
      const cb = h('input', {type: 'checkbox', id: 'cls-' + i, checked: true, 'data-class': c});
      const sw = h('span', {class: 'swatch'}); sw.style.background = colour(i);
      return h('div', {}, cb, h('label', {for: 'cls-' + i}, sw, c));
    }));
    const lvlSel = h('select', {id: 'level-filter'}, h('option', {value: '', text: t('all')}), det.levels.map((l, i) => h('option', {value: String(i), text: l})));
    const info = h('div', {id: 'det-info', class: 'card', role: 'status', text: t('clickHint')});
    const count = h('p', {id: 'det-count', class: 'muted'});
    const layerInfo = h('div', {class: 'card', id: 'layer-info'}, h('h2', {text: t('provenance')}), showLabel(det.layer.label, det.layer.label_display), ' ',
      h('a', {href: '#/item/' + encodeURIComponent(det.layer.id), text: det.layer.name}), h('p', {class: 'muted', text: `${det.layer.created_by} · ${det.layer.created_at.slice(0, 19)}`}));
    const mapDiv = h('div', {id: 'map', tabindex: 0, 'aria-label': 'map'});
    view.append(h('div', {class: 'map-wrap'}, mapDiv, h('div', {}, h('form', {id: 'map-filters'}, classBoxes, field('level-filter', 'level', lvlSel)), count, info, layerInfo)));
    const O = window.CMOL;
    const extent = [0, 0, W, H];
    const proj = new O.Projection({code: 'casemate-pixels', units: 'pixels', extent});
    const n = det.cls.length;
    // Detections live in typed arrays and are drawn straight onto one canvas (an OpenLayers
    // ImageCanvas source): no feature objects, so 50,000 boxes draw in one pass and the layer
    // image is only moved while the user drags.
    const rings = Float32Array.from(det.rings), cls = Int16Array.from(det.cls), lvl = Int8Array.from(det.lvl);
    const bbox = new Float32Array(n * 4);
    for (let i = 0; i < n; i++) {
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (let k = 0; k < 4; k++) { const x = rings[i * 8 + 2 * k], y = rings[i * 8 + 2 * k + 1]; x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
      bbox.set([x0, y0, x1, y1], i * 4);
    }
    const hiddenClass = new Set(); let levelOnly = null;
    const visible = (i) => !hiddenClass.has(cls[i]) && (levelOnly === null || lvl[i] === levelOnly);
    const draw = (extent, resolution, pixelRatio, size) => {
      const d0 = performance.now();
      const canvas = document.createElement('canvas');
      canvas.width = size[0]; canvas.height = size[1];
      const g = canvas.getContext('2d');
      const s = pixelRatio / resolution, ox = extent[0], oy = extent[3];
      // one path per (class, level) pair: a handful of fills and strokes for any number of boxes;
      // boxes smaller than 4 screen pixels are drawn as plain squares (no path to tessellate)
      const groups = new Map(), dots = new Map();
      for (let i = 0; i < n; i++) {
        if (!visible(i)) continue;
        const o = i * 4;
        if (bbox[o + 2] < ox || bbox[o] > extent[2] || H - bbox[o + 1] < extent[1] || H - bbox[o + 3] > oy) continue;
        const key = cls[i] * 4 + (lvl[i] + 1);  // level -1 (none) is slot 0
        if ((bbox[o + 2] - bbox[o]) * s < 4) {
          let d = dots.get(cls[i]); if (!d) { d = []; dots.set(cls[i], d); }
          d.push((bbox[o] - ox) * s, (oy - (H - bbox[o + 1])) * s);
          continue;
        }
        let p = groups.get(key); if (!p) { p = new Path2D(); groups.set(key, p); }
        const r = i * 8;
        p.moveTo((rings[r] - ox) * s, (oy - (H - rings[r + 1])) * s);
        for (let k = 1; k < 4; k++) p.lineTo((rings[r + 2 * k] - ox) * s, (oy - (H - rings[r + 2 * k + 1])) * s);
        p.closePath();
      }
      const dot = Math.max(2, 2 * pixelRatio);
      for (const [c, d] of dots) {
        g.fillStyle = colour(c);
        for (let k = 0; k < d.length; k += 2) g.fillRect(d[k], d[k + 1], dot, dot);
      }
      for (const [key, p] of groups) {
        const c = Math.floor(key / 4), l = (key % 4) - 1;
        g.fillStyle = colour(c) + '99'; g.fill(p);
        g.strokeStyle = l >= 0 ? LEVEL_STROKE[l] : '#9e9e9e'; g.lineWidth = (1 + Math.max(l, 0)) * pixelRatio; g.stroke(p);
      }
      document.body.dataset.drawMs = String(Math.round(performance.now() - d0));
      return canvas;
    };
    const canvasSource = new O.ImageCanvas({canvasFunction: draw, projection: proj, ratio: 1.5});
    const layer = new O.ImageLayer({source: canvasSource});
    const raster = new O.ImageLayer({source: new O.Static({url: API + '/items/' + encodeURIComponent(img ? img.id : id) + '/render.png', projection: proj, imageExtent: extent})});
    const map = new O.Map({target: mapDiv, layers: [raster, layer], controls: O.defaultControls({attribution: false}),
      view: new O.View({projection: proj, center: O.getCenter(extent), zoom: 1, maxZoom: 10})});
    map.getView().fit(extent, {padding: [10, 10, 10, 10]});
    mapObj = map; window.cmMap = map;
    window.cmDetections = {n, rings, H};
    const shown = () => { let k = 0; for (let i = 0; i < n; i++) if (visible(i)) k++; return k; };
    const refresh = () => { count.textContent = `${shown()} / ${n} ${t('drawn')}`; canvasSource.changed(); };
    classBoxes.addEventListener('change', (ev) => { const i = det.classes.indexOf(ev.target.dataset.class); if (ev.target.checked) hiddenClass.delete(i); else hiddenClass.add(i); refresh(); });
    lvlSel.addEventListener('change', () => { levelOnly = lvlSel.value === '' ? null : Number(lvlSel.value); refresh(); });
    refresh();
    const pick = (x, y) => {  // image pixels (y down): the smallest visible box that holds the point
      let best = -1, area = Infinity;
      for (let i = 0; i < n; i++) {
        const o = i * 4;
        if (x < bbox[o] || x > bbox[o + 2] || y < bbox[o + 1] || y > bbox[o + 3] || !visible(i)) continue;
        const a = (bbox[o + 2] - bbox[o]) * (bbox[o + 3] - bbox[o + 1]);
        if (a < area) { area = a; best = i; }
      }
      return best;
    };
    map.on('singleclick', (ev) => {
      const i = pick(ev.coordinate[0], H - ev.coordinate[1]);
      if (i < 0) { info.textContent = t('clickHint'); return; }
      info.replaceChildren(h('h2', {text: t('detection')}), h('table', {id: 'det-table'},
        [[t('classes'), det.classes[cls[i]]], [t('level'), lvl[i] >= 0 ? det.levels[lvl[i]] : '—'], [t('score'), det.score[i]],
          ['#', i], [t('provenance'), det.layer.name], [t('label'), det.layer.label]].map(([k, x]) => h('tr', {}, h('th', {text: k}), h('td', {text: x})))));
      info.dataset.index = i;
    });
    map.once('rendercomplete', () => {
      document.body.dataset.mapMs = String(Math.round(performance.now() - t0));
      document.body.dataset.state = 'ready'; document.body.dataset.map = 'ready';
    });
    document.body.dataset.state = 'map-loading';
  }

  // -- imagery compare -------------------------------------------------------------------------------
  const enc = encodeURIComponent;
  const itemOption = (v) => h('option', {value: v.id, 'data-label': v.label, text: `[${v.label}] ${v.name} (${v.id})`});
  const itemLink = (v) => h('span', {}, showLabel(v.label, v.label_display), ' ', h('a', {href: '#/item/' + enc(v.id), text: v.name}));
  const headRow = (keys) => h('thead', {}, h('tr', {}, keys.map((k) => h('th', {scope: 'col', text: k}))));

  async function compareView(view) {
    const dets = await call('GET', '/items?kind=detections&limit=200');
    const geo = await call('GET', '/items?name=.geojson&limit=200');
    const zoneItems = geo.items.filter((v) => !['detections', 'change'].includes(v.kind));
    const changes = await call('GET', '/items?kind=change&limit=50');
    const imgs = await call('GET', '/items?kind=image&limit=200');
    raise(dets.items.concat(zoneItems, changes.items, imgs.items).map((v) => v.label));
    // detections of each date, or images (detected first with the default detector)
    const dates = () => [h('optgroup', {label: t('detections')}, dets.items.map(itemOption)), h('optgroup', {label: t('images')}, imgs.items.map(itemOption))];
    const before = h('select', {id: 'cmp-before', required: true}, dates());
    const after = h('select', {id: 'cmp-after', required: true}, dates());
    if (dets.items.length > 1) before.selectedIndex = 1;  // newest first: the later date is the first one
    const zones = h('select', {id: 'cmp-zones'}, h('option', {value: '', text: t('noZones')}), zoneItems.map(itemOption));
    const alert = h('input', {id: 'cmp-alert', type: 'number', min: 1, step: 1});
    const out = h('div', {id: 'cmp-status', role: 'status'});
    const f = h('form', {class: 'inline', id: 'cmp-form'}, field('cmp-before', 'before', before), field('cmp-after', 'after', after),
      field('cmp-zones', 'zones', zones), field('cmp-alert', 'alertAt', alert), h('button', {type: 'submit', id: 'cmp-run', text: t('compareRun')}));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault(); out.replaceChildren();
      try {
        const body = {before: before.value, after: after.value};
        if (zones.value) body.zones = zones.value;
        if (alert.value) body.alert = Number(alert.value);
        const r = await call('POST', '/imagery/compare', body);
        const job = await watchJob(r.job, out);
        location.hash = '#/change/' + enc(job.result.item);
      } catch (e) { out.append(h('p', {class: 'error', id: 'cmp-error', text: e.message})); document.body.dataset.state = 'compare-error'; }
    });
    view.append(h('h1', {text: t('compare')}), f, out, h('h2', {text: t('change')}),
      h('ul', {id: 'changes'}, changes.items.map((v) => h('li', {'data-id': v.id}, showLabel(v.label, v.label_display), ' ',
        h('a', {href: '#/change/' + enc(v.id), text: v.name}), ` — ${v.created_at.slice(0, 19).replace('T', ' ')}`)),
        changes.items.length ? null : h('li', {text: t('none')})));
  }

  async function changeView(view, id) {
    const ch = await call('GET', '/items/' + enc(id) + '/change');
    raise([ch.label]);
    const cols = ['zone', 'class', 'before', 'after', 'appeared', 'departed', 'moved', 'unchanged'];
    const table = h('table', {id: 'change-table'}, headRow([t('zone'), t('classes'), t('colBefore'), t('colAfter'), t('appeared'), t('departed'), t('moved'), t('unchanged')]),
      h('tbody', {}, ch.rows.map((r) => h('tr', {'data-zone': r.zone, 'data-class': r.class}, cols.map((k) => h('td', {'data-col': k, text: r[k]}))))));
    const alerts = ch.alerts.length
      ? h('ul', {id: 'alerts'}, ch.alerts.map((a) => h('li', {class: 'error', text: `${a.zone} — ${a.class} : ${a.before} → ${a.after} (${t('delta')} ${a.delta}, ${t('threshold')} ${a.threshold})`})))
      : h('p', {id: 'alerts', text: t('noAlert')});
    const card = h('div', {class: 'card', id: 'change-card'}, h('h2', {}, showLabel(ch.label, ch.label_display), ' ', t('perZone'), ' — ', ch.change.name),
      h('p', {}, t('colBefore') + ' : ', h('a', {href: '#/item/' + enc(ch.before), id: 'change-before', text: ch.before}), ' · ',
        t('colAfter') + ' : ', h('a', {href: '#/item/' + enc(ch.after), id: 'change-after', text: ch.after})), table, h('h2', {text: t('alerts')}), alerts);
    await mapView(view, id);
    view.append(card);
  }

  // -- robot pack: missions, approvals, runs, replay --------------------------------------------------
  async function missionView(view, id) {
    const m = await call('GET', '/pack/missions/' + enc(id));
    raise([m.label]);
    const v = m.mission, meta = v.metadata || {};
    view.append(h('h1', {id: 'mission-name'}, showLabel(v.label, v.label_display), ' ', v.name));
    view.append(h('div', {class: 'card'}, h('table', {id: 'mission-meta'}, [['id', h('a', {href: '#/item/' + enc(v.id), text: v.id})],
      [t('detections'), meta.from_detections ? h('a', {href: '#/item/' + enc(meta.from_detections), text: meta.from_detections}) : '—'],
      [t('wanted'), meta.level || '—'], [t('by'), v.created_by], [t('created'), v.created_at.slice(0, 19)]].map(([k, x]) => h('tr', {}, h('th', {text: k}), h('td', {}, x))))));
    const officer = me.roles.includes('officer') || me.roles.includes('admin');
    const rows = m.tasks.map((tk) => {
      let action = '';
      if (tk.marked && !tk.decision && officer) {
        const rid = 'dec-reason-' + tk.task;
        const reason = h('input', {id: rid, required: true});
        const out = h('span', {class: 'error', role: 'status', id: 'dec-out-' + tk.task});
        const decide = async (decision) => {
          if (!reason.value.trim()) { out.textContent = t('reason') + ' ?'; reason.focus(); return; }
          try { await call('POST', `/pack/missions/${enc(v.id)}/tasks/${enc(tk.task)}/decision`, {decision, reason: reason.value}); await route(); } catch (e) { out.textContent = e.message; }
        };
        action = h('div', {class: 'inline-decision'}, h('label', {for: rid, text: t('reason')}), reason,
          h('button', {type: 'button', id: 'approve-' + tk.task, onclick: () => decide('approve'), text: t('approve')}),
          h('button', {type: 'button', class: 'secondary', id: 'reject-' + tk.task, onclick: () => decide('reject'), text: t('reject')}), out);
      }
      const dec = tk.decision ? t(tk.decision === 'approve' ? 'approved' : 'rejected') : (tk.marked ? t('pending') : '—');
      return h('tr', {'data-task': tk.task, 'data-decision': tk.decision || ''}, h('td', {text: tk.task}), h('td', {text: tk.class || '—'}), h('td', {text: tk.level}),
        h('td', {text: tk.marked ? t('needed') : t('notNeeded')}), h('td', {class: 'decision', text: dec}), h('td', {text: tk.by || ''}), h('td', {text: tk.reason || ''}), h('td', {}, action));
    });
    view.append(h('div', {class: 'card'}, h('h2', {text: t('tasks')}), h('table', {id: 'tasks'},
      headRow([t('task'), t('classes'), t('wanted'), t('marked'), t('decision'), t('by'), t('reason'), '']), h('tbody', {}, rows))));
    const seed = h('input', {id: 'mission-seed', type: 'number', value: '0', min: '0'});
    const pace = h('input', {id: 'mission-pace', type: 'number', min: '0.1', step: 'any', placeholder: '—'});
    const out = h('div', {id: 'mission-status', role: 'status'});
    const f = h('form', {class: 'inline', id: 'mission-run-form'}, field('mission-seed', 'seed', seed), field('mission-pace', 'pace', pace),
      h('button', {type: 'submit', id: 'mission-run', text: t('runMission')}));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const body = {mission: v.id, seed: Number(seed.value) || 0};
        if (pace.value) body.pace = Number(pace.value);
        const r = await call('POST', '/pack/runs', body);
        const job = await watchJob(r.job, out);
        location.hash = '#/run/' + enc(job.result.item);
      } catch (e) { out.append(h('p', {class: 'error', text: e.message})); }
    });
    const runs = h('ul', {id: 'runs'}, m.runs.filter((r) => r.results).map((r) => h('li', {}, showLabel(r.results.label), ' ',
      h('a', {href: '#/run/' + enc(r.results.id), text: `${t('seed')} ${r.seed} — ${r.results.name}`}), ` (${r.findings.length} ${t('findings').toLowerCase()})`)));
    view.append(h('div', {class: 'card'}, h('h2', {text: t('runs')}), f, out, runs));
  }

  async function runView(view, id) {
    const r = await call('GET', '/items/' + enc(id) + '/results');
    raise([r.label]);
    view.append(h('h1', {id: 'run-name'}, showLabel(r.results.label, r.results.label_display), ' ', r.results.name));
    const plain = Object.entries(r.metrics).filter(([, x]) => x === null || ['number', 'string', 'boolean'].includes(typeof x));
    view.append(h('div', {class: 'card'}, h('h2', {text: t('metrics')}), h('table', {id: 'metrics'},
      plain.map(([k, x]) => h('tr', {'data-metric': k}, h('th', {text: k}), h('td', {text: typeof x === 'number' ? String(Math.round(x * 1000) / 1000) : String(x)}))))));
    if (r.replay) {
      const rep = await call('GET', '/items/' + enc(r.replay.id) + '/replay');
      raise([rep.label]);
      view.append(h('div', {class: 'card'}, h('h2', {}, showLabel(rep.label, rep.label_display), ' ', t('replay'), ' — ', rep.replay.name), player(rep)));
    }
    if (r.tasks.length) {
      const keys = Object.keys(r.tasks[0]).slice(0, 7);
      view.append(h('div', {class: 'card'}, h('h2', {text: t('gates')}), h('table', {id: 'run-tasks'}, headRow(keys),
        h('tbody', {}, r.tasks.map((x) => h('tr', {'data-task': x.task, 'data-gate': x.gate || ''}, keys.map((k) => h('td', {text: x[k] === null ? '—' : String(x[k])}))))))));
    }
    view.append(h('div', {class: 'card'}, h('h2', {text: t('findings')}), h('ul', {id: 'findings'},
      r.findings.map((x) => h('li', {'data-task': x.task}, itemLink(x), ` — ${t('task')} ${x.task}, ${t('level')} ${x.level}, robot ${x.robot}`)))));
  }

  // The pack's replay drawn in the page (the stored replay.html is never run in the console's origin).
  function player(rep) {
    const H = rep.header, F = rep.frames;
    const [x0, y0, x1, y1] = H.extent;
    const W = Math.min(1000, Math.max(320, (document.getElementById('view').clientWidth || 1000) - 40));
    const scale = W / (x1 - x0);
    const cv = h('canvas', {id: 'replay', width: W, height: Math.max(1, Math.round((y1 - y0) * scale)), role: 'img', 'aria-label': t('replay')});
    const ctx = cv.getContext('2d');
    const bg = document.createElement('canvas'); bg.width = cv.width; bg.height = cv.height;
    const g = bg.getContext('2d');
    const colours = ['#111', '#5d6b3a', '#0b2942', '#444'];
    g.fillStyle = '#111'; g.fillRect(0, 0, bg.width, bg.height);
    if (H.terrain) {
      const cs = H.cell * scale;
      for (let iy = 0; iy < H.terrain.length; iy++) for (let ix = 0; ix < H.terrain[0].length; ix++) {
        g.fillStyle = H.nogo && H.nogo[iy][ix] ? '#6b2020' : colours[H.terrain[iy][ix]];
        g.fillRect(ix * cs, bg.height - (iy + 1) * cs, cs + 0.5, cs + 0.5);
      }
    }
    g.strokeStyle = '#aaa'; g.beginPath();
    (H.area || []).forEach((p, i) => { const X = (p[0] - x0) * scale, Y = bg.height - (p[1] - y0) * scale; if (i) g.lineTo(X, Y); else g.moveTo(X, Y); });
    g.closePath(); g.stroke();
    const dom = {air: '#ffd54f', ground: '#81c784', surface: '#4fc3f7'};
    const rc = (H.robot_type || []).map((tp) => dom[(H.domains || {})[tp]] || '#fff');
    const slider = h('input', {type: 'range', id: 'replay-frame', min: 0, max: F.length - 1, value: 0});
    const clock = h('span', {id: 'replay-time'});
    const draw = (i) => {
      const f = F[i];
      ctx.drawImage(bg, 0, 0);
      const r = Math.max(1.5, Math.min(4, 2000 / Math.max(1, f.x.length)));
      for (let k = 0; k < f.x.length; k++) {
        ctx.fillStyle = f.alive && !f.alive[k] ? '#555' : (rc[k] || '#fff');
        ctx.fillRect((f.x[k] - x0) * scale - r / 2, cv.height - (f.y[k] - y0) * scale - r / 2, r, r);
      }
      (f.targets || []).forEach((p, k) => {
        const seen = f.found && f.found[k] >= 0;
        ctx.strokeStyle = seen ? '#fff' : '#e57373';
        ctx.beginPath(); ctx.arc((p[0] - x0) * scale, cv.height - (p[1] - y0) * scale, 6, 0, 7); ctx.stroke();
        if (seen) { ctx.fillStyle = '#fff'; ctx.fillText('DRI'[f.found[k]], (p[0] - x0) * scale + 8, cv.height - (p[1] - y0) * scale); }
      });
      clock.textContent = `t = ${Number(f.t).toFixed(1)} s${f.coverage === null || f.coverage === undefined ? '' : ` · ${(100 * f.coverage).toFixed(1)} %`} · ${t('frame')} ${i + 1} / ${F.length}`;
      cv.dataset.frame = String(i);
    };
    let timer = null;
    const play = h('button', {type: 'button', id: 'replay-play', text: t('play')});
    const stop = () => { clearInterval(timer); timer = null; play.textContent = t('play'); };
    play.addEventListener('click', () => {
      if (timer) { stop(); return; }
      play.textContent = t('pause');
      timer = setInterval(() => {
        if (!document.body.contains(cv)) { stop(); return; }
        let i = +slider.value + 1; if (i >= F.length) i = 0; slider.value = i; draw(i);
      }, 60);
    });
    slider.addEventListener('input', () => draw(+slider.value));
    draw(0);
    document.body.dataset.replay = 'ready';
    return h('div', {id: 'player-box'}, h('div', {class: 'inline'}, play, ' ', h('label', {for: 'replay-frame', text: t('frame')}), ' ', slider, ' ', clock), cv);
  }

  // -- model factory -----------------------------------------------------------------------------------
  const ACTIVE = ['queued', 'running'];
  async function modelsView(view) {
    const [ds, jobs, models] = [await call('GET', '/factory/datasets'), await call('GET', '/factory/jobs'), await call('GET', '/factory/models')];
    raise([ds.label, jobs.label, models.label]);
    const officer = me.roles.includes('officer') || me.roles.includes('admin');
    view.append(h('h1', {text: t('nav.models')}));
    view.append(h('div', {class: 'card'}, h('h2', {text: t('datasets')}), h('table', {id: 'datasets'},
      headRow([t('label'), t('name'), t('images'), t('objects'), t('taxonomy'), t('created')]),
      h('tbody', {}, ds.datasets.map((d) => h('tr', {'data-id': d.id}, h('td', {}, showLabel(d.label, d.label_display)),
        h('td', {}, h('a', {href: '#/item/' + enc(d.id), text: d.name})), h('td', {text: d.images}), h('td', {text: d.objects}),
        h('td', {text: (d.classes || []).join(', ')}), h('td', {text: String(d.created_at).slice(0, 19)})))))));
    const dsel = h('select', {id: 'train-dataset', required: true}, ds.datasets.map((d) => h('option', {value: d.id, text: `[${d.label}] ${d.name}`})));
    const epochs = h('input', {id: 'train-epochs', type: 'number', min: 1, value: 30});
    const tout = h('p', {id: 'train-status', role: 'status'});
    const tf = h('form', {class: 'inline', id: 'train-form'}, field('train-dataset', 'datasets', dsel), field('train-epochs', 'epochs', epochs),
      h('button', {type: 'submit', id: 'train', text: t('train')}), tout);
    tf.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try { await call('POST', '/factory/jobs', {dataset: dsel.value, epochs: Number(epochs.value) || null}); await route(); } catch (e) { tout.textContent = e.message; tout.className = 'error'; }
    });
    const jbody = h('tbody', {});
    const jobRows = (list) => jbody.replaceChildren(...list.map((j) => {
      const c = ACTIVE.includes(j.state) && (j.submitted_by === me.user || me.roles.includes('admin'))
        ? h('button', {type: 'button', class: 'secondary', text: t('cancel'), onclick: () => call('POST', '/factory/jobs/' + enc(j.id) + '/cancel').then(route, fail)}) : '';
      return h('tr', {'data-job': j.id, 'data-state': j.state}, h('td', {}, showLabel(j.label, j.label_display)), h('td', {text: j.id}), h('td', {text: j.kind}),
        h('td', {text: j.state}), h('td', {}, h('progress', {max: 1, value: j.progress || 0})), h('td', {text: j.submitted_by}),
        h('td', {}, j.result && j.result.model ? h('a', {href: '#/item/' + enc(j.result.model), text: j.result.model}) : ''), h('td', {}, c));
    }));
    jobRows(jobs.jobs);
    view.append(h('div', {class: 'card'}, h('h2', {text: t('trainJobs')}), tf, h('table', {id: 'factory-jobs'},
      headRow([t('label'), 'id', t('kind'), t('state'), t('progress'), t('by'), t('result'), '']), jbody)));
    // the progress of running jobs, in place (the rest of the page stays as it is)
    const here = location.hash;
    const poll = async () => {
      if (location.hash !== here || !document.body.contains(jbody)) return;
      try { const d = await call('GET', '/factory/jobs'); jobRows(d.jobs); raise([d.label]); if (d.jobs.some((j) => ACTIVE.includes(j.state))) setTimeout(poll, 2000); } catch (e) { /* the next visit shows it */ }
    };
    if (jobs.jobs.some((j) => ACTIVE.includes(j.state))) setTimeout(poll, 2000);
    const mrows = models.models.map((m) => {
      let promote = '';
      if (officer) {
        const aid = 'alias-' + m.id, gid = 'gate-' + m.id;
        const alias = h('input', {id: aid, value: 'production', size: 10});
        const gate = h('select', {id: gid}, h('option', {value: '', text: t('noGate')}), ds.datasets.map((d) => h('option', {value: d.id, text: d.name})));
        const out = h('span', {role: 'status', id: 'promote-out-' + m.id});
        const go = h('button', {type: 'button', id: 'promote-' + m.id, text: t('promote')});
        go.addEventListener('click', async () => {
          out.textContent = ''; out.className = '';
          try {
            const body = {alias: alias.value.trim()}; if (gate.value) body.gate = gate.value;
            const r = await call('POST', '/factory/models/' + enc(m.id) + '/promote', body);
            if (r.job) await watchJob(r.job, out);
            await route();
          } catch (e) { out.textContent = e.message; out.className = 'error'; }
        });
        promote = h('div', {class: 'inline-decision'}, h('label', {for: aid, text: t('alias')}), alias, h('label', {for: gid, text: t('gate')}), gate, go, out);
      }
      const map50 = m.metrics && typeof m.metrics.map50 === 'number' ? m.metrics.map50.toFixed(3) : '—';
      return h('tr', {'data-model': m.id}, h('td', {}, showLabel(m.label, m.label_display)), h('td', {}, h('a', {href: '#/item/' + enc(m.id), text: m.model_name || m.name})),
        h('td', {class: 'aliases', text: m.aliases.join(', ') || '—'}), h('td', {text: (m.taxonomy || []).join(', ')}), h('td', {text: map50}), h('td', {}, promote));
    });
    view.append(h('div', {class: 'card'}, h('h2', {text: t('models')}), h('table', {id: 'models'},
      headRow([t('label'), t('name'), t('aliases'), t('taxonomy'), 'mAP50', '']), h('tbody', {}, mrows))));
  }

  // -- upload --------------------------------------------------------------------------------------
  async function uploadView(view) {
    const files = h('input', {type: 'file', id: 'files', multiple: true});
    const label = h('select', {id: 'upload-label', 'aria-required': 'true'}, h('option', {value: '', text: t('labelRequired')}),
      LEVELS.slice(0, parseLabel(me.clearance).level + 1).map((l) => h('option', {value: l, text: `${DISPLAY[lang][l]} (${l})`})));
    const extra = h('input', {id: 'upload-label-text', placeholder: 'S//ALPHA'});
    const drop = h('div', {id: 'drop', tabindex: 0}, t('drop'));
    const results = h('ul', {id: 'upload-results'});
    let dropped = [];
    drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (ev) => { ev.preventDefault(); drop.classList.remove('over'); dropped = [...ev.dataTransfer.files]; drop.textContent = dropped.map((f) => f.name).join(', '); });
    drop.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') files.click(); });
    const form = h('form', {id: 'upload-form'}, drop, field('files', 'files', files), field('upload-label', 'label', label),
      field('upload-label-text', 'label', extra), h('button', {type: 'submit', id: 'upload-button', text: t('upload')}));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault(); results.replaceChildren();
      const lab = extra.value.trim() || label.value;
      if (!lab) { results.append(h('li', {class: 'error', text: t('labelRequired')})); return; }
      const fd = new FormData(); fd.append('label', lab);
      for (const f of [...files.files, ...dropped]) fd.append('files', f, f.name);
      try {
        const r = await call('POST', '/upload', fd);
        raise([r.label]);
        for (const x of r.results) {
          results.append(h('li', {'data-ok': String(x.ok), 'data-file': x.file, class: x.ok ? 'ok' : 'error'}, x.file, ': ',
            x.ok ? (x.item ? [t('ok') + ' ', showLabel(x.item.label), ' ', h('a', {href: '#/item/' + encodeURIComponent(x.item.id), text: x.item.id})] : t('skipped')) : x.error));
        }
        document.body.dataset.state = 'uploaded';
      } catch (e) { results.append(h('li', {class: 'error', 'data-ok': 'false', text: e.message})); document.body.dataset.state = 'uploaded'; }
    });
    view.append(h('h1', {text: t('nav.upload')}), form, results);
  }

  // -- assistant -----------------------------------------------------------------------------------
  let conversation = null;
  async function chatView(view) {
    const q = h('textarea', {id: 'question', rows: 3, cols: 60});
    const answer = h('div', {id: 'answer', 'aria-live': 'polite'});
    const lab = h('p', {id: 'answer-label'});
    const cites = h('ol', {id: 'citations'});
    const form = h('form', {id: 'chat-form'}, field('question', 'question', q), h('button', {type: 'submit', id: 'send', text: t('send')}));
    q.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) form.requestSubmit(); });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault(); answer.textContent = ''; cites.replaceChildren(); lab.replaceChildren();
      document.body.dataset.state = 'asking';
      try {
        const r = await call('POST', '/ask', {question: q.value, conversation_id: conversation}, true);
        if (!r.ok) { const d = await r.json(); throw new Error(d.error.message); }
        const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = '';
        for (;;) {
          const {value, done} = await reader.read(); if (done) break;
          buf += dec.decode(value, {stream: true});
          let k;
          while ((k = buf.indexOf('\n\n')) >= 0) {
            const line = buf.slice(0, k); buf = buf.slice(k + 2);
            if (!line.startsWith('data: ')) continue;
            const ev2 = JSON.parse(line.slice(6));
            if (ev2.type === 'meta') {
              raise([ev2.label]); lab.replaceChildren(t('answerLabel') + ' : ', showLabel(ev2.label, ev2.label_display));
              for (const c of ev2.citations) {
                const a = h('a', {href: '#/item/' + encodeURIComponent(c.version_id) + '?hl=1', 'data-version': c.version_id, text: `[${c.n}] ${c.name} — ${c.anchor_text}`});
                a.addEventListener('click', () => sessionStorage.setItem('cm-hl:' + c.version_id, c.snippet));
                cites.append(h('li', {class: 'citation', 'data-version': c.version_id}, showLabel(c.label), ' ', a));
              }
            } else if (ev2.type === 'delta') answer.append(ev2.text);
            else if (ev2.type === 'error') throw new Error(ev2.message);
            else if (ev2.type === 'done') { conversation = ev2.conversation_id; document.body.dataset.conversation = conversation || ''; }
          }
        }
        document.body.dataset.state = 'done';
      } catch (e) { fail(e); }
    });
    view.append(h('h1', {text: t('nav.chat')}), form, lab, answer, h('h2', {text: t('citations')}), cites);
    q.focus();
  }

  // -- jobs, audit, users, tokens --------------------------------------------------------------------
  async function jobsView(view) {
    const data = await call('GET', '/jobs');
    view.append(h('h1', {text: t('jobs')}), h('table', {id: 'jobs'}, h('tr', {}, ['id', t('kind'), t('state'), t('progress'), t('result')].map((x) => h('th', {text: x}))),
      data.jobs.map((j) => h('tr', {}, h('td', {text: j.id}), h('td', {text: j.kind}), h('td', {text: t(j.state)}), h('td', {}, h('progress', {max: 1, value: j.progress})),
        h('td', {}, j.result && j.result.item ? h('a', {href: '#/item/' + encodeURIComponent(j.result.item), text: j.result.item}) : (j.error || ''))))));
  }
  async function auditView(view) {
    const out = h('p', {id: 'verify-result', role: 'status'});
    const btn = h('button', {type: 'button', id: 'audit-verify', text: t('verify')});
    btn.addEventListener('click', async () => {
      try { const r = await call('POST', '/audit/verify'); out.textContent = `${r.ok ? t('verifyOk') : t('verifyBad')} — ${r.entries} ${t('entries')}${r.reason ? ' — ' + r.reason : ''}`; out.className = r.ok ? 'ok' : 'error'; out.dataset.ok = String(r.ok); } catch (e) { out.textContent = e.message; }
    });
    const data = await call('GET', '/audit?n=100');
    view.append(h('h1', {text: t('nav.audit')}), btn, out, h('table', {id: 'audit'}, h('tr', {}, ['#', 'ts', t('actor'), t('action'), t('target')].map((x) => h('th', {text: x}))),
      data.entries.reverse().map((e) => h('tr', {}, h('td', {text: e.seq}), h('td', {text: e.ts.slice(0, 19)}), h('td', {text: e.actor}), h('td', {text: e.action}), h('td', {text: e.target || ''})))));
  }
  async function usersView(view) {
    const data = await call('GET', '/users');
    const out = h('p', {id: 'user-result', role: 'status'});
    const f = h('form', {class: 'inline', id: 'user-form'},
      field('new-user-name', 'name', h('input', {id: 'new-user-name', required: true})),
      field('new-user-clearance', 'clearance', h('input', {id: 'new-user-clearance', required: true, placeholder: 'DR'})),
      field('new-user-roles', 'roles', h('select', {id: 'new-user-roles'}, ['analyst', 'officer', 'admin'].map((r) => h('option', {value: r, text: r})))),
      field('new-user-password', 'password', h('input', {id: 'new-user-password', type: 'password', autocomplete: 'new-password'})),
      h('button', {type: 'submit', id: 'add-user', text: t('addUser')}), out);
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const pw = $('new-user-password').value;
        await call('POST', '/users', {name: $('new-user-name').value.trim(), clearance: $('new-user-clearance').value.trim(), roles: [$('new-user-roles').value], password: pw || null});
        route();
      } catch (e) { out.textContent = e.message; out.className = 'error'; }
    });
    view.append(h('h1', {text: t('users')}), f, h('table', {id: 'users'}, h('tr', {}, [t('name'), t('clearance'), t('roles'), ''].map((x) => h('th', {text: x}))),
      data.users.map((u) => {
        const b = u.disabled || u.name === me.user ? null : h('button', {type: 'button', class: 'secondary', text: t('disable')});
        if (b) b.addEventListener('click', () => call('POST', '/users/' + encodeURIComponent(u.name) + '/disable').then(route, fail));
        return h('tr', {'data-user': u.name}, h('td', {text: u.name + (u.disabled ? ' ✗' : '')}), h('td', {}, showLabel(u.clearance, u.clearance_display)), h('td', {text: u.roles.join(', ')}), h('td', {}, b));
      })));
  }
  async function tokensView(view) {
    const data = await call('GET', '/tokens');
    const secret = h('p', {id: 'token-secret-box', role: 'status'});
    const f = h('form', {class: 'inline', id: 'token-form'}, field('token-note', 'note', h('input', {id: 'token-note'})),
      me.roles.includes('admin') ? field('token-user', 'forUser', h('input', {id: 'token-user', placeholder: me.user})) : null,
      h('button', {type: 'submit', id: 'create-token', text: t('createToken')}));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const u = $('token-user') ? $('token-user').value.trim() : '';
        const r = await call('POST', '/tokens', {note: $('token-note').value, user: u || null});
        await tokensTable();
        secret.replaceChildren(t('tokenShown'), ' ', h('code', {id: 'token-secret', text: r.token}));
      } catch (e) { secret.textContent = e.message; }
    });
    const table = h('table', {id: 'tokens'});
    async function tokensTable(d) {
      d = d || await call('GET', '/tokens');
      table.replaceChildren(h('tr', {}, ['id', 'user', t('note'), t('created'), ''].map((x) => h('th', {text: x}))),
        d.tokens.map((k) => {
          const b = k.revoked ? t('revoked') : h('button', {type: 'button', class: 'secondary', text: t('revoke')});
          if (!k.revoked) b.addEventListener('click', () => call('POST', '/tokens/' + k.id + '/revoke').then(() => tokensTable(), fail));
          return h('tr', {'data-token': k.id}, h('td', {text: k.id}), h('td', {text: k.user}), h('td', {text: k.label}), h('td', {text: k.created_at.slice(0, 19)}), h('td', {}, b));
        }));
    }
    await tokensTable(data);
    view.append(h('h1', {text: t('tokens')}), f, secret, table);
  }

  document.addEventListener('DOMContentLoaded', () => start().catch(fail));
})();
