"""The fusion benchmark's report: Markdown with BENCHMARKS.md's headings, and a PNG plot."""

from __future__ import annotations

from .fusion import GOALS, JPEG_QUALITY, NAIVE_STAGES, STAGES


def _s(v: float) -> str:
    return f"{v:.3f}"


def _spread(d: dict) -> str:
    return f"{d['median']:.3f} ({d['min']:.3f}–{d['max']:.3f})"


def markdown(res: dict) -> str:
    """The report as Markdown, with the section headings BENCHMARKS.md uses."""
    m = res["machine"]
    L = [f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['platform']}, Python {m['python']}, OpenCV {m['opencv']} "
         f"({m['opencv_threads']} threads), load average at start {m['load_avg_at_start']}; commit {m['git_commit']}"
         f"{' + uncommitted changes to ' + ', '.join(m['git_modified']) if m.get('git_modified') else ''}, {m['date']}.",
         f"Pair: {res['source']} onto {res['target']} ({res['target_size'][0]}x{res['target_size'][1]}); "
         f"{res['repeat']} warm runs per row after one discarded; seconds, median (min–max). "
         f"Mode {res['params']['mode']}, smoothing {res['params']['smoothing']}.", "",
         "## Fusion speed and memory", "",
         "| output | frame Mpx | ROI Mpx | " + " | ".join(STAGES) + " | **total** | codec floor | total / floor | peak RSS MB |",
         "|---" * (len(STAGES) + 7) + "|"]
    for row in res["resolutions"]:
        st = row["stages"]
        rss = f"{row['memory']['peak_rss_mb']:.0f}" if "memory" in row else "–"
        L.append(f"| {row['output_size'][0]}x{row['output_size'][1]} | {row['frame_mpx']:.2f} | {row['roi_mpx']:.2f} | "
                 + " | ".join(_s(st[s]["median"]) for s in STAGES)
                 + f" | **{_spread(st['total'])}** | {_s(row['floor']['total']['median'])}"
                 + f" | {row['ratio']['median']:.1f}x | {rss} |")
    sp = res["source_prep"]["median"]
    L += ["", f"Source decode + detect alone: {sp:.3f} s (a caller that prepares the source once, "
          "e.g. batch, saves this on every fusion). Codec floor = OpenCV imdecode + resize (INTER_AREA below 1/2, "
          f"INTER_LINEAR from 1/2 to 1, INTER_CUBIC up) + imencode JPEG q{JPEG_QUALITY} 4:4:4, the same file facefuse writes."]
    if any("memory" in row for row in res["resolutions"]):
        L += ["", "| output | RSS after imports MB | after model load MB | peak MB |", "|---|---|---|---|"]
        for row in res["resolutions"]:
            if "memory" in row:
                mm = row["memory"]
                L.append(f"| {row['resolution']} | {mm['rss_start_mb']:.0f} | {mm['rss_after_model_load_mb']:.0f} "
                         f"| {mm['peak_rss_mb']:.0f} |")
    if res.get("goals"):
        L += ["", "Goals (the project's, on a 2-core CPU):", "", "| goal | target | measured | met |", "|---|---|---|---|"]
        for g in res["goals"]:
            note = f" ({g['note']})" if g.get("note") else ""
            L.append(f"| {g['what']} | {g.get('op', '≤')} {g['goal']:g} {g['unit']} | {g['measured']:.3g} {g['unit']}{note} "
                     f"| {'yes' if g['met'] else '**no**'} |")
    if "cold_start" in res:
        c = res["cold_start"]
        L += ["", "## Cold start", "",
              f"`facefuse fuse` in a new process, one {c['resolution']} fusion, {len(c['runs'])} run(s):", "",
              "| launch → file written | launch → exit | python start | imports + setup | model load "
              "| fusion work (decode…encode) |",
              "|---|---|---|---|---|---|",
              f"| {_spread(c['to_file'])} | {_s(c['to_exit']['median'])} | {_s(c['python_start']['median'])} | "
              f"{_s(c['imports_s'])} | {_s(c['model_load_s'])} | {_s(c['work_s'])} |"]
    L += ["", "## Scaling", "", "Same face, every output size (from the table above):", "",
          "| output | frame Mpx | ROI Mpx | face px | roi+engine+blend s | per ROI Mpx | decode+paste+encode s | codec floor s |",
          "|---|---|---|---|---|---|---|---|"]
    for row in res["resolutions"]:
        L.append(f"| {row['resolution']} | {row['frame_mpx']:.2f} | {row['roi_mpx']:.2f} | {row['face_px']:.0f} | "
                 f"{_s(row['face_work_s'])} | {row['face_work_s'] / max(row['roi_mpx'], 1e-6):.3f} | "
                 f"{_s(row['frame_work_s'])} | {_s(row['floor']['total']['median'])} |")
    fit = res.get("scaling_fit")
    if fit:
        f, g, c = fit["face_work_vs_roi"], fit["frame_work_vs_frame"], fit["floor_vs_frame"]
        L += ["", f"Fitted lines: roi+engine+blend ≈ {f['fixed_s']:.3f} s {f['per_mpx_s']:+.3f} s per ROI Mpx; "
              f"decode+paste+encode ≈ {g['fixed_s']:.3f} s {g['per_mpx_s']:+.3f} s per output Mpx "
              f"(codec floor: {c['fixed_s']:.3f} s {c['per_mpx_s']:+.3f} s per output Mpx; the fixed part is "
              "decoding the input, the same at every output size)."]
    if "scaling" in res:
        sc = res["scaling"]
        L += ["", f"Same output size ({sc['size']}), small vs large face — {sc['note']}:", "",
              "| target | frame | face px | ROI Mpx | detect | roi+engine+blend | decode+paste+encode | total | codec floor |",
              "|---|---|---|---|---|---|---|---|---|"]
        for row in sc["targets"]:
            L.append(f"| {row['target']} ({row['label']}) | {row['output_size'][0]}x{row['output_size'][1]} | "
                     f"{row['face_px']:.0f} | {row['roi_mpx']:.2f} | {_s(row['stages']['detect']['median'])} | "
                     f"{_s(row['face_work_s'])} | {_s(row['frame_work_s'])} | {_s(row['stages']['total']['median'])} | "
                     f"{_s(row['floor']['total']['median'])} |")
    if "compare" in res:
        L += ["", "## Naive baseline (--compare)", "",
              "Naive = detect both, warpAffine the whole source by a similarity on rigid landmarks, "
              "cv2.seamlessClone in the convex hull of the target mesh.", "",
              "| output | facefuse total | naive total | naive: " + " | ".join(NAIVE_STAGES) + " |",
              "|---" * (3 + len(NAIVE_STAGES)) + "|"]
        rows = {row["resolution"]: row for row in res["resolutions"]}
        for c in res["compare"]:
            n = c["naive"]
            L.append(f"| {c['resolution']} | {_s(rows[c['resolution']]['stages']['total']['median'])} | "
                     f"{_s(n['total']['median'])} | " + " | ".join(_s(n[s]["median"]) for s in NAIVE_STAGES) + " |")
    if "long_run" in res:
        lr = res["long_run"]
        pts = lr["curve"]
        pick = [pts[0], pts[1]] + [pts[i] for i in range(2, len(pts), max(1, (len(pts) - 2) // 8))] + [pts[-1]]
        seen, curve = set(), []
        for n, r in pick:
            if n not in seen:
                seen.add(n)
                curve.append(f"{n}: {r:.0f}")
        L += ["", "## Long run (RSS)", "",
              f"{lr['fusions']} fusions at {lr['resolution']} in one process (median {lr['fusion_total']['median']:.3f} s each): "
              f"RSS {lr['rss_before_mb']:.0f} MB before, {lr['rss_after_first_mb']:.0f} MB after the first, "
              f"{lr['rss_end_mb']:.0f} MB at the end (max {lr['rss_max_mb']:.0f}); growth {lr['growth_mb']:+.1f} MB, "
              f"second-half slope {lr['slope_second_half_mb_per_1000']:+.1f} MB per 1000 fusions.", "",
              "RSS curve (fusions: MB): " + ", ".join(curve)]
    return "\n".join(L)


STAGE_COLOURS = {"decode": "#8da0cb", "detect": "#fc8d62", "roi": "#b3b3b3", "engine": "#66c2a5",
                 "blend": "#a6d854", "paste": "#e78ac3", "encode": "#ffd92f"}


def plot(res: dict, path: str, overwrite: bool = False) -> None:
    """Stacked stage bars per resolution with the codec floor and goal marked; the
    small/large face comparison and the long-run RSS curve when measured."""
    import io as _io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import write_bytes_atomic

    panels = 1 + ("scaling" in res) + ("long_run" in res)
    widths = [2.2] + [1.0] * (panels - 1)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 + 3.6 * (panels - 1), 4.2), gridspec_kw={"width_ratios": widths})
    axes = list(axes) if panels > 1 else [axes]
    ax = axes[0]
    rows = res["resolutions"]
    x = list(range(len(rows)))
    width = 0.38 if "compare" in res else 0.6
    bottom = [0.0] * len(rows)
    for s in STAGES:
        vals = [r["stages"][s]["median"] for r in rows]
        ax.bar([i - (width / 2 if "compare" in res else 0) for i in x], vals, width, bottom=bottom,
               color=STAGE_COLOURS[s], label=s, edgecolor="white", linewidth=0.3)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    xs = [i - (width / 2 if "compare" in res else 0) for i in x]
    for i, r in enumerate(rows):
        fl = r["floor"]["total"]["median"]
        ax.hlines(fl, xs[i] - width / 2, xs[i] + width / 2, colors="black", linewidth=2,
                  label="codec floor" if i == 0 else None)
        goal = GOALS["total_s"].get(r["resolution"])
        if goal:
            ax.hlines(goal, xs[i] - width / 2, xs[i] + width / 2, colors="red", linestyles="--", linewidth=1.2,
                      label="goal" if i == 0 else None)
        ax.text(xs[i], bottom[i], f"{r['stages']['total']['median']:.2f}s\n{r['ratio']['median']:.1f}x",
                ha="center", va="bottom", fontsize=7)
    if "compare" in res:
        naive = {c["resolution"]: c["naive"]["total"]["median"] for c in res["compare"]}
        ax.bar([i + width / 2 for i in x], [naive.get(r["resolution"], 0) for r in rows], width,
               color="none", edgecolor="#555555", hatch="//", label="naive seamlessClone")
    ax.set_xticks(x, [f"{r['resolution']}" for r in rows])
    ax.set_xlabel("output long side (px)")
    ax.set_ylabel("seconds (stage medians, warm)")
    ax.set_title(f"facefuse fusion, {res['machine']['cpus']} CPUs", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    k = 1
    if "scaling" in res:
        ax2 = axes[k]
        k += 1
        sc = res["scaling"]["targets"]
        labels = [f"{t['label']}\nROI {t['roi_mpx']:.2f} Mpx" for t in sc]
        bottom = [0.0] * len(sc)
        for s in STAGES:
            vals = [t["stages"][s]["median"] for t in sc]
            ax2.bar(range(len(sc)), vals, 0.6, bottom=bottom, color=STAGE_COLOURS[s], edgecolor="white", linewidth=0.3)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        for i, t in enumerate(sc):
            ax2.hlines(t["floor"]["total"]["median"], i - 0.3, i + 0.3, colors="black", linewidth=2)
        ax2.set_xticks(range(len(sc)), labels, fontsize=7)
        ax2.set_title(f"same output ({res['scaling']['size']}), small vs large face", fontsize=9)
    if "long_run" in res:
        ax3 = axes[k]
        lr = res["long_run"]
        n, r = zip(*lr["curve"], strict=True)
        ax3.plot(n, r, color="#1f78b4", linewidth=1.2)
        ax3.set_xlabel("fusions")
        ax3.set_ylabel("RSS (MB)")
        ax3.set_title(f"RSS over {lr['fusions']} fusions at {lr['resolution']}", fontsize=9)
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue(), overwrite=overwrite)
