import sys; sys.path.insert(0, '/tmp/rt6')
from rt import *
from b1 import base
from concurrent.futures import ThreadPoolExecutor
def job(a):
    dg, guard, when, b, c, sc = a
    d = base(budget=b, conc=c, scope=True)
    d['instance']['config']['max_deactivations'] = guard
    d['instance']['config']['scope_groups'] = sc
    st = [{"entra": {"delete_group": gid(dg)}}, {"notify": {"resource": "groups", "id": gid(dg), "change_type": "deleted"}}]
    pre = [{"deploy": {}}] if when == 'after' else [{"deploy": {"calls": 2}}]
    d['steps'] = pre + st + [{"resume": {}}]
    go(d, f't4_g{dg}_gd{guard}_{when}_b{b}_c{c}_sc{len(sc)}', big=False, par=False)
args = []
for dg, sc in [(3, f"{gid(2)}"), (1, f"{gid(4)}"), (1, f"{gid(4)},{gid(2)}"), (3, f"{gid(2)},{gid(1)}")]:
    for guard in ["2", "1000"]:
        for when in ['after', 'during']:
            args.append((dg, guard, when, 2000, 1, sc))
with ThreadPoolExecutor(1) as ex: list(ex.map(job, args))
