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
    jobs: jobsView, pack: packView, audit: auditView, users: usersView, tokens: tokensView};
  async function route() {
    const [path, query] = location.hash.slice(2).split('?');
    const [name, arg] = path.split('/');
    const params = new URLSearchParams(query || '');
    if (mapObj) { mapObj.setTarget(null); mapObj = null; }
    delete document.body.dataset.map; delete document.body.dataset.mapMs;
    $('error').textContent = ''; resetBanner();
    document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.getAttribute('href') === '#/' + name));
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
    let cursor = null;
    async function load() {
      const q = new URLSearchParams(params); if (cursor) q.set('before', cursor);
      const data = await call('GET', '/items?' + q.toString());
      raise([data.label]);
      for (const v of data.items) {
        tbody.append(h('tr', {'data-id': v.id, class: 'row'}, h('td', {}, showLabel(v.label, v.label_display)),
          h('td', {}, h('a', {href: '#/item/' + encodeURIComponent(v.id), text: v.name})), h('td', {text: v.kind}),
          h('td', {text: v.created_at.slice(0, 19).replace('T', ' ')}), h('td', {text: v.created_by})));
      }
      if (!tbody.children.length) tbody.append(h('tr', {}, h('td', {colspan: 5, text: t('none')})));
      cursor = data.next; more.hidden = !cursor;
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
    const sel = h('select', {id: 'pack-scenario'}, data.scenarios.map((s) => h('option', {value: s, text: s})));
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
        const link = (id, key) => id ? h('li', {}, t(key) + ' : ', h('a', {href: '#/item/' + encodeURIComponent(id), text: id})) : null;
        out.append(h('ul', {id: 'pack-results'}, link(res.item, 'results'), link(res.replay, 'replay'), (res.findings || []).map((x) => link(x, 'findings')),
          h('li', {text: Object.entries(res.metrics || {}).map(([k, x]) => `${k}: ${x}`).join(' · ')})));
        document.body.dataset.state = 'pack-done';
      } catch (e) { out.textContent = e.message; }
    });
    view.append(h('h1', {text: t('nav.pack')}), f, out);
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
  async function mapView(view, id) {
    const t0 = performance.now();
    const det = await call('GET', '/items/' + encodeURIComponent(id) + '/detections?format=compact');
    document.body.dataset.fetchMs = String(Math.round(performance.now() - t0));
    raise([det.label]);
    const img = det.image; const W = det.width, H = det.height;
    view.append(h('h1', {}, showLabel(det.label, det.label_display), ' ', img ? img.name : det.layer.name));
    const classBoxes = h('fieldset', {id: 'class-filter'}, h('legend', {text: t('classes')}), det.classes.map((c, i) => {
      const cb = h('input', {type: 'checkbox', id: 'cls-' + i, checked: true, 'data-class': c});
      const sw = h('span', {class: 'swatch'}); sw.style.background = PALETTE[i % PALETTE.length];
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
        const key = cls[i] * 4 + lvl[i] + 1;
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
        g.fillStyle = PALETTE[c % PALETTE.length];
        for (let k = 0; k < d.length; k += 2) g.fillRect(d[k], d[k + 1], dot, dot);
      }
      for (const [key, p] of groups) {
        const c = Math.floor((key - 1) / 4), l = ((key - 1) % 4) - 1;
        g.fillStyle = PALETTE[c % PALETTE.length] + '99'; g.fill(p);
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
