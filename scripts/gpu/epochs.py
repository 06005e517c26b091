"""Per-epoch wall time and val figures of scripts/gpu/paper-recipe.sh runs: python3 scripts/gpu/epochs.py RUN_DIR... (each
holding train-events.jsonl); writes epochs.json in the current folder and prints a summary."""
import json, sys
runs = sys.argv[1:] or ['paper-teacher', 'paper-none']
out = {}
for run in runs:
    ev = []
    for l in open(f'{run}/train-events.jsonl'):
        t, j = l.split(' ', 1); ev.append((float(t), json.loads(j)))
    t0 = ev[0][0]
    starts = {e['epoch']: t for t, e in ev if e['event'] == 'epoch_start'}
    vals = {e['epoch']: (t, e) for t, e in ev if e['event'] == 'validation'}
    rows = []
    for ep in sorted(vals):
        t, e = vals[ep]; m = e['metrics']
        rows.append({'epoch': ep, 'seconds': round(t - starts[ep], 1), 'val_seconds': e['seconds'],
                     'loss': e['loss'], 'teacher_loss': e.get('teacher_loss'),
                     'recall@1': [m['recall@1']['micro'], m['recall@1']['macro']],
                     'vote_map_k5': m['vote']['k5']['map'], 'vote_auc_k5': m['vote']['k5']['auc'],
                     'vote_k10': m['vote'].get('k10', {}).get('map'),
                     'head_map': m['head']['map'], 'head_auc': m['head']['auc']})
    done = [e for t, e in ev if e['event'] == 'done'][0]
    head = [e for t, e in ev if e['event'] == 'genre_head'][0]
    first = [t for t, e in ev if e['event'] == 'epoch_start'][0]
    last_val = max(t for t, _ in vals.values())
    out[run] = {'epochs': rows, 'train_seconds_20_epochs': round(last_val - first, 1),
                'mean_epoch_seconds': round((last_val - first) / len(rows), 1),
                'mean_epoch_seconds_2_20': round((last_val - starts[2]) / (len(rows) - 1), 1),
                'run_seconds': done['seconds'], 'best_epoch': done['best_epoch'], 'genre_head_val_float32': head}
json.dump(out, open('epochs.json', 'w'), indent=1)
for run, r in out.items():
    print(run, r['train_seconds_20_epochs'], r['mean_epoch_seconds'], r['mean_epoch_seconds_2_20'], r['run_seconds'], r['best_epoch'], r['genre_head_val_float32'])
    for x in r['epochs']:
        print(' ', x['epoch'], x['seconds'], x['val_seconds'], x['loss'], x['teacher_loss'], x['recall@1'], x['vote_map_k5'], x['vote_auc_k5'], x['head_map'], x['head_auc'])
