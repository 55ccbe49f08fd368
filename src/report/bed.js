(function () {
  var rows = document.querySelectorAll('#console > div');
  var note = document.getElementById('window');
  function show(first, last, what) {
    rows.forEach(function (r) {
      var t = parseFloat(r.dataset.t);
      r.classList.toggle('hidden', first !== null && (t < first || t > last));
    });
    note.classList.toggle('hidden', first === null);
    if (first !== null) {
      document.getElementById('window-text').textContent =
        what + ': ' + first.toFixed(3) + ' – ' + last.toFixed(3) + ' s';
    }
  }
  document.querySelectorAll('tr.link').forEach(function (tr) {
    tr.addEventListener('click', function (ev) {
      if (ev.target.tagName === 'A' || tr.dataset.first === '') return;
      show(parseFloat(tr.dataset.first), parseFloat(tr.dataset.last), tr.dataset.file);
    });
  });
  document.getElementById('show-all').addEventListener('click', function (ev) {
    ev.preventDefault();
    show(null, null, '');
  });
})();
