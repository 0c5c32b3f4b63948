"""Test oracles: the official networks' key/shape layouts and forward passes, transcribed as plain tensor
functions from the public code (facts: module names, shapes, equations; no code copied), so avvp's models
can be checked against them with the same weights.

    han     YapengTian/AVVP-ECCV20 nets/net_audiovisual.py (MMIL_Net; MA's step-3 net is the same + unused
            t_att/t_att2/fc1/fc2)
    valor   Franklin905/VALOR main_network.py (MMIL_Net, post-norm, sequential Encoder)
    mmpyr   JustinYuu/MM_Pyramid main_network.py + nets/MPAM.py + nets/Transformer.py (AVVPNet)
    leap    jasongief/LEAP main_network_temporal_add_label.py (AVVPNet = MMP + AVL)
    mmcse   PengchengZhao1001/MM-CSE code/main_network.py (MMCSE_Net)
    cvcms   GenjiB/CM-Co-Occurrence-AVVP nets/net_trans.py (MMIL_Net)

Layouts are dicts official key -> shape, built with the constructors' sizes (Linear(in, out) -> weight
(out, in), bias (out,); LayerNorm(d); nn.MultiheadAttention(d) -> in_proj (3d, d) / (3d,), out_proj).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Layout = dict[str, tuple[int, ...]]


# --------------------------------------------------------------------------------------- layout helpers
def linear(p: str, i: int, o: int) -> Layout:
    return {f"{p}.weight": (o, i), f"{p}.bias": (o,)}


def conv1d(p: str, c: int, k: int) -> Layout:
    return {f"{p}.weight": (c, c, k), f"{p}.bias": (c,)}


def norm(p: str, d: int) -> Layout:
    return {f"{p}.weight": (d,), f"{p}.bias": (d,)}


def torch_mha(p: str, d: int) -> Layout:
    return {f"{p}.in_proj_weight": (3 * d, d), f"{p}.in_proj_bias": (3 * d,), **linear(f"{p}.out_proj", d, d)}


def han_layer(p: str, d: int, ff: int) -> Layout:
    return {**torch_mha(f"{p}.self_attn", d), **torch_mha(f"{p}.cm_attn", d), **linear(f"{p}.linear1", d, ff),
            **linear(f"{p}.linear2", ff, d), **norm(f"{p}.norm1", d), **norm(f"{p}.norm2", d)}


def torch_encoder_layer(p: str, d: int, ff: int) -> Layout:  # nn.TransformerEncoderLayer
    return {**torch_mha(f"{p}.self_attn", d), **linear(f"{p}.linear1", d, ff), **linear(f"{p}.linear2", ff, d),
            **norm(f"{p}.norm1", d), **norm(f"{p}.norm2", d)}


def mmil_head(d: int, k: int = 25) -> Layout:
    return {**linear("fc_prob", d, k), **linear("fc_frame_att", d, k), **linear("fc_av_att", d, k)}


def projection(a: int, v: int, d: int) -> Layout:
    return {**linear("fc_a", a, d), **linear("fc_v", v, d), **linear("fc_st", 512, d), **linear("fc_fusion", 2 * d, d)}


def han_layout(extra_ma: bool = False) -> Layout:
    out = {**mmil_head(512), **projection(128, 2048, 512)}
    for enc in ("audio_encoder", "visual_encoder"):  # built, never called
        out.update(torch_encoder_layer(f"{enc}.layers.0", 512, 512))
    out.update({**torch_encoder_layer("cmt_encoder.layers.0", 512, 512), **norm("cmt_encoder.norm1", 512),
                **norm("cmt_encoder.norm2", 512)})
    out.update({**han_layer("hat_encoder.layers.0", 512, 512), **norm("hat_encoder.norm1", 512),
                **norm("hat_encoder.norm2", 512)})
    if extra_ma:  # step3 MMIL_Net: MultiHeadAttention2 (models_utils) x2, fc1, fc2, never called
        for m in ("t_att", "t_att2"):
            out.update({**linear(f"{m}.w_qs", 512, 512), **linear(f"{m}.w_ks", 512, 512),
                        **linear(f"{m}.w_vs", 512, 512), **linear(f"{m}.fc", 512, 512),
                        f"{m}.layer_norm.gamma": (512,), f"{m}.layer_norm.beta": (512,)})
        out.update({**linear("fc1", 1024, 256), **linear("fc2", 256, 2)})
    return out


def valor_layout(a: int, v: int, d: int, ff: int, layers: int) -> Layout:
    out = {**mmil_head(d), **projection(a, v, d), **norm("hat_encoder.final_norm_a", d), **norm("hat_encoder.final_norm_v", d)}
    for i in range(layers):
        out.update(han_layer(f"hat_encoder.layers.{i}", d, ff))
    return out


def _transformer_layer(p: str, d: int, ff: int) -> Layout:  # MM-Pyramid's TransformerLayer(MultiHeadAttention)
    out = {f"{p}.self_attn.linears.{i}.{w}": s for i in range(4) for w, s in (("weight", (d, d)), ("bias", (d,)))}
    out.update({**norm(f"{p}.self_attn.layer_norm", d), **linear(f"{p}.feed_forward.w_1", d, ff),
                **linear(f"{p}.feed_forward.w_2", ff, d), **norm(f"{p}.sublayer.0.norm", d), **norm(f"{p}.sublayer.1.norm", d)})
    return out


def mmp_layout(p: str = "MMP", d: int = 512, ff: int = 512, levels: int = 4) -> Layout:
    out: Layout = {}
    for m in ("capture", "fusion"):  # prototypes deep-copied into the layers
        out.update({f"{p}.{m}.multiheadattn.linears.{i}.{w}": s for i in range(4) for w, s in (("weight", (d, d)), ("bias", (d,)))})
        out.update({**norm(f"{p}.{m}.multiheadattn.layer_norm", d), **linear(f"{p}.{m}.feedforward.w_1", d, ff),
                    **linear(f"{p}.{m}.feedforward.w_2", ff, d)})
    for i in range(levels):
        for net in ("vnetwork", "anetwork"):
            b = f"{p}.capture.{net}.{i}"
            out.update({**conv1d(f"{b}.conv1", d, 3), **conv1d(f"{b}.conv2", d, 1), **conv1d(f"{b}.net.0", d, 3),
                        **conv1d(f"{b}.net.2", d, 1)})
        m = f"{p}.capture.msa.{i}"
        for blk in ("vsablock", "asablock", "cmablock"):
            out.update(_transformer_layer(f"{m}.{blk}.layer", d, ff))
        for g in ("lv1", "lv2", "la1", "la2"):
            out.update(linear(f"{m}.{g}", 2 * d, d))
    for s in ("vadaptiveinteraction", "aadaptiveinteraction"):
        out.update(_transformer_layer(f"{p}.fusion.{s}", d, ff))
    out.update({**linear(f"{p}.fusion.vselectfusion", d, 1), **linear(f"{p}.fusion.aselectfusion", d, 1)})
    return out


def mmpyr_layout() -> Layout:
    return {**mmil_head(512), **projection(128, 2048, 512), **mmp_layout()}


def leap_layout(blocks: int = 2, label_dim: int = 300) -> Layout:
    out = {**projection(128, 2048, 512), **mmp_layout(), **linear("fc_l", label_dim, 512),
           **linear("fc_la", 512, 1), **linear("fc_lv", 512, 1)}
    out.update({f"AVL.multiheadattn.linears.{i}.{w}": s for i in range(4) for w, s in (("weight", (512, 512)), ("bias", (512,)))})
    out.update({**norm("AVL.multiheadattn.layer_norm", 512), **linear("AVL.feedforward.w_1", 512, 512),
                **linear("AVL.feedforward.w_2", 512, 512)})
    for net in ("lv_cma_network", "la_cma_network"):
        for i in range(blocks):
            out.update(_transformer_layer(f"AVL.{net}.{i}", 512, 512))
    return out


def mmcse_layout(d1: int = 256, d2: int = 128, layers: int = 4, a: int = 768, v: int = 768) -> Layout:
    out = {**projection(a, v, d1)}
    for i in range(26):
        out.update({**linear(f"v_unmix.{i}.1", d1, d2), **linear(f"v_unmix.{i}.4", d2, d2), **linear(f"a_unmix.{i}.1", d1, d2)})
    out.update({**linear("v_recon.model.1", 26 * d2, d1), **linear("v_recon.model.3", d1, d1),
                **linear("a_recon.0", 26 * d2, 256), **linear("a_recon.2", 256, 256)})
    for i in range(layers):
        p = f"av_enhance.layers.{i}"
        out.update({**linear(f"{p}.linear1", d2, 512), **linear(f"{p}.linear2", 512, d2), **norm(f"{p}.norm1", d2),
                    **torch_mha(f"{p}.SECM_1.attn", d2), **torch_mha(f"{p}.SECM_2.attn", d2),
                    **linear(f"{p}.LGSF_1.glob1", d2, d2), **linear(f"{p}.LGSF_1.glob2", d2, d2),
                    **linear(f"{p}.LGSF_2.glob", d2, d2), **linear(f"{p}.fc1", d2, d2), **linear(f"{p}.fc2", d2, d2)})
    out.update({**norm("av_enhance.final_norm_a", d2), **norm("av_enhance.final_norm_v", d2)})
    for head in ("fc_prob", "fc_frame_att", "fc_av_att"):
        for k in range(25):
            out.update(linear(f"{head}.fc.{k}", d2, 1))
    out.update({**linear("reduce_a.0", 2 * d2, d2), **linear("reduce_v.0", 2 * d2, d2)})
    for m in ("alpha_a", "alpha_v"):
        out.update({**linear(f"{m}.model.1", d1, d1 // 2), **linear(f"{m}.model.4", d1 // 2, 1)})
    return out


def cvcms_layout(occ: int = 128, ff: int = 512) -> Layout:
    out = {**mmil_head(512), **projection(128, 2048, 512), **linear("fc_occ_class_a", 512, 25 * occ),
           **linear("fc_occ_class_v", 512, 25 * occ), **linear("fc_occ_class_av", 1024, 25 * occ)}
    for m in ("v", "a", "av"):
        for x in "qkv":
            out.update(linear(f"fc_occ_{m}_{x}", occ, occ))
    for m in ("fc_occ_prob_a", "fc_occ_prob_v", "fc_occ_frame_prob", "fc_occ_modality_prob"):
        out.update(linear(m, occ, 1))
    out.update({**han_layer("hat_encoder.layers.0", 512, ff), **norm("hat_encoder.norm1", 512), **norm("hat_encoder.norm2", 512)})
    for enc in ("av_class_encoder", "frame_att_encoder", "modality_encoder"):
        out.update({**han_layer(f"{enc}.layers.0", occ, occ), **norm(f"{enc}.norm1", 512), **norm(f"{enc}.norm2", 512)})
    return out


def random_state(layout: Layout, seed: int = 0, scale: float = 0.05) -> dict[str, torch.Tensor]:
    """Random official weights; duplicate names of one tensor (MM-Pyramid's net.0 / net.2) share a value."""
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(s, generator=g) * scale for k, s in layout.items()}
    for k in list(sd):
        if ".norm" in k and k.endswith(".weight") or "layer_norm.weight" in k:
            sd[k] = 1.0 + sd[k]
    for k in list(sd):
        if ".net.0." in k:
            sd[k] = sd[k.replace(".net.0.", ".conv1.")]
        if ".net.2." in k:
            sd[k] = sd[k.replace(".net.2.", ".conv2.")]
    return sd


# --------------------------------------------------------------------------------------- forward oracles
def lin(sd, p, x):
    return F.linear(x, sd[f"{p}.weight"], sd[f"{p}.bias"])


def ln(sd, p, x):
    return F.layer_norm(x, x.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"])


def torch_attention(sd, p, q, kv, heads):
    """nn.MultiheadAttention on sequence-first tensors (the official code permutes (B,T,d) -> (T,B,d))."""
    d = q.shape[-1]
    out, w = F.multi_head_attention_forward(
        q.transpose(0, 1), kv.transpose(0, 1), kv.transpose(0, 1), d, heads, sd[f"{p}.in_proj_weight"],
        sd[f"{p}.in_proj_bias"], None, None, False, 0.0, sd[f"{p}.out_proj.weight"], sd[f"{p}.out_proj.bias"],
        training=False, need_weights=True)
    return out.transpose(0, 1), w


def han_layer_fwd(sd, p, q, kv, heads, pre_norm=False):
    if pre_norm:
        qn = ln(sd, f"{p}.norm1", q)
        q = q + torch_attention(sd, f"{p}.cm_attn", qn, kv, heads)[0] + torch_attention(sd, f"{p}.self_attn", qn, qn, heads)[0]
        return q + lin(sd, f"{p}.linear2", F.relu(lin(sd, f"{p}.linear1", ln(sd, f"{p}.norm2", q))))
    q = ln(sd, f"{p}.norm1", q + torch_attention(sd, f"{p}.cm_attn", q, kv, heads)[0] + torch_attention(sd, f"{p}.self_attn", q, q, heads)[0])
    return ln(sd, f"{p}.norm2", q + lin(sd, f"{p}.linear2", F.relu(lin(sd, f"{p}.linear1", q))))


def mmil_pool(frame_logits, att_logits, av_logits):
    frame_prob = torch.sigmoid(frame_logits)
    temporal = torch.softmax(att_logits, dim=1) * frame_prob
    global_prob = (temporal * torch.softmax(av_logits, dim=2)).sum(2).sum(1)
    return global_prob, temporal[:, :, 0].sum(1), temporal[:, :, 1].sum(1), frame_prob


def project(sd, audio, visual, st):
    if audio.shape[1] == 64:  # VALOR++ CLAP token map
        b, _, da = audio.shape
        x = F.interpolate(audio.permute(0, 2, 1).reshape(b, da, 2, 32), size=(2, 1024), mode="bicubic")
        x = lin(sd, "fc_a", x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).mean(dim=2)
        a = F.adaptive_avg_pool1d(x, 10).permute(0, 2, 1)
    else:
        a = lin(sd, "fc_a", audio)
    if visual.shape[1] == 80:
        v = F.avg_pool2d(lin(sd, "fc_v", visual).permute(0, 2, 1).unsqueeze(-1), (8, 1)).squeeze(-1).permute(0, 2, 1)
    else:
        v = lin(sd, "fc_v", visual)
    return a, lin(sd, "fc_fusion", torch.cat([v, lin(sd, "fc_st", st)], dim=-1))


def mmil_forward(sd, audio, visual, st, layers=1, heads=1, sequential=False, pre_norm=False):
    """HAN / MA / VALOR MMIL_Net: -> (global, a_prob, v_prob, frame_prob)."""
    a, v = project(sd, audio, visual, st)
    for i in range(layers):
        p = f"hat_encoder.layers.{i}"
        if sequential:  # VALOR: the visual update sees the updated audio
            a = han_layer_fwd(sd, p, a, v, heads, pre_norm)
            v = han_layer_fwd(sd, p, v, a, heads, pre_norm)
        else:
            a, v = han_layer_fwd(sd, p, a, v, heads, pre_norm), han_layer_fwd(sd, p, v, a, heads, pre_norm)
    if pre_norm:
        a, v = ln(sd, "hat_encoder.final_norm_a", a), ln(sd, "hat_encoder.final_norm_v", v)
    x = torch.stack([a, v], dim=2)
    return mmil_pool(lin(sd, "fc_prob", x), lin(sd, "fc_frame_att", x), lin(sd, "fc_av_att", x))


def pyr_attention(sd, p, query, key, value, heads, masksize, raw_scores=False):
    """MultiHeadAttention(h, d, masksize) of MM-Pyramid/LEAP (`linears` 0-3), the band mask as the
    official loop builds it."""
    b, d = query.shape[0], query.shape[-1]
    dk = d // heads
    q, k, v = (lin(sd, f"{p}.linears.{i}", x).view(b, -1, heads, dk).transpose(1, 2) for i, x in enumerate((query, key, value)))
    scores = q @ k.transpose(-2, -1) / math.sqrt(dk)
    if masksize != 1:
        m = int(masksize / 2)
        mask = torch.ones_like(scores)
        for i in range(mask.shape[2]):
            if i - m > 0:
                mask[:, :, i, : i - m] = 0
            if i + m + 1 < mask.shape[3]:
                mask[:, :, i, m + i + 1:] = 0
        scores = scores.masked_fill(mask == 0, -1e9)
    x = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, -1, heads * dk)
    return lin(sd, f"{p}.linears.3", x), scores


def pyr_layer(sd, p, q, k, v, heads, masksize=1):
    q = q + pyr_attention(sd, f"{p}.self_attn", ln(sd, f"{p}.sublayer.0.norm", q), k, v, heads, masksize)[0]
    n = ln(sd, f"{p}.sublayer.1.norm", q)
    return q + lin(sd, f"{p}.feed_forward.w_2", F.relu(lin(sd, f"{p}.feed_forward.w_1", n)))


def mmp_forward(sd, video, audio, p="MMP", levels=4, heads=8):
    """MultimodalPyramidAttentionalModule(video, audio) -> (v_out, a_out)."""
    v_list, a_list, v, a = [], [], video, audio
    for i in range(levels):
        m, size = f"{p}.capture.msa.{i}", 2 ** i * 2
        v_sa = pyr_layer(sd, f"{m}.vsablock.layer", v, v, v, heads, size)
        a_sa = pyr_layer(sd, f"{m}.asablock.layer", a, a, a, heads, size)
        v_cma = pyr_layer(sd, f"{m}.cmablock.layer", v, a, a, heads, size)
        a_cma = pyr_layer(sd, f"{m}.cmablock.layer", a, v, v, heads, size)
        v_sq, a_sq = torch.cat((v_sa, v_cma), -1), torch.cat((a_sa, a_cma), -1)
        v_msa = torch.sigmoid(lin(sd, f"{m}.lv1", v_sq)) * v_sa + torch.sigmoid(lin(sd, f"{m}.lv2", v_sq)) * v_cma
        a_msa = torch.sigmoid(lin(sd, f"{m}.la1", a_sq)) * a_sa + torch.sigmoid(lin(sd, f"{m}.la2", a_sq)) * a_cma

        def tcn(net, x, i=i):
            y = x.permute(0, 2, 1)
            c1 = F.conv1d(y, sd[f"{p}.capture.{net}.{i}.conv1.weight"], sd[f"{p}.capture.{net}.{i}.conv1.bias"],
                          padding=2 ** i, dilation=2 ** i)
            c2 = F.conv1d(F.relu(c1), sd[f"{p}.capture.{net}.{i}.conv2.weight"], sd[f"{p}.capture.{net}.{i}.conv2.bias"])
            return F.relu(c2 + y).permute(0, 2, 1)

        v, a = tcn("vnetwork", v_msa), tcn("anetwork", a_msa)
        v_list.append(v)
        a_list.append(a)
    d = video.shape[-1]
    v_stage = torch.stack(v_list, dim=2).reshape(-1, levels, d)
    a_stage = torch.stack(a_list, dim=2).reshape(-1, levels, d)
    v_int = pyr_layer(sd, f"{p}.fusion.vadaptiveinteraction", v_stage, v_stage, v_stage, heads)
    a_int = pyr_layer(sd, f"{p}.fusion.aadaptiveinteraction", a_stage, a_stage, a_stage, heads)
    v_w = torch.sigmoid(lin(sd, f"{p}.fusion.vselectfusion", v_int))
    a_w = torch.sigmoid(lin(sd, f"{p}.fusion.aselectfusion", a_int))
    v_out = torch.bmm(v_int.permute(0, 2, 1), v_w).view(-1, 10, d)
    a_out = torch.bmm(a_int.permute(0, 2, 1), a_w).view(-1, 10, d)
    return v_out, a_out


def mmpyr_forward(sd, audio, visual, st):
    f_a, f_v = project(sd, audio, visual, st)
    v_o, a_o = mmp_forward(sd, f_v, f_a)
    x = torch.stack([v_o, a_o], dim=2)  # official order: [v_o, a_o]
    return mmil_pool(lin(sd, "fc_prob", x), lin(sd, "fc_frame_att", x), lin(sd, "fc_av_att", x))


def leap_forward(sd, audio, visual, st, label, blocks=2, heads=8):
    """-> (global, a_prob, v_prob, a_frame_prob, v_frame_prob)."""
    f_l = lin(sd, "fc_l", label).unsqueeze(0).expand(audio.shape[0], -1, -1)
    f_a, f_v = project(sd, audio, visual, st)
    v_o, a_o = mmp_forward(sd, f_v, f_a)

    def decode(net, feats):
        x, attn = f_l, None
        for i in range(blocks):
            p = f"AVL.{net}.{i}"
            x = x + pyr_attention(sd, f"{p}.self_attn", ln(sd, f"{p}.sublayer.0.norm", x), feats, feats, heads, 1)[0]
            attn = pyr_attention(sd, f"{p}.self_attn", x, feats, feats, heads, 1, raw_scores=True)[1]
            x = x + lin(sd, f"{p}.feed_forward.w_2", F.relu(lin(sd, f"{p}.feed_forward.w_1", ln(sd, f"{p}.sublayer.1.norm", x))))
        return x, attn.mean(dim=1).permute(0, 2, 1)

    lv_f, lv_attn = decode("lv_cma_network", v_o)
    la_f, la_attn = decode("la_cma_network", a_o)
    v_prob = torch.sigmoid(lin(sd, "fc_lv", lv_f).squeeze(-1))
    a_prob = torch.sigmoid(lin(sd, "fc_la", la_f).squeeze(-1))
    at, vt = (a_prob >= 0.5).float(), (v_prob >= 0.5).float()
    return at + vt - at * vt, a_prob, v_prob, torch.sigmoid(la_attn), torch.sigmoid(lv_attn)


def mmcse_forward(sd, audio, visual, st, layers=4, heads=8):
    x1, x2 = project(sd, audio, visual, st)
    a_unmix = lambda i, x: F.relu(lin(sd, f"a_unmix.{i}.1", F.relu(x)))  # noqa: E731
    v_unmix = lambda i, x: F.relu(lin(sd, f"v_unmix.{i}.4", F.relu(lin(sd, f"v_unmix.{i}.1", F.relu(x)))))  # noqa: E731
    x1_2 = torch.stack([a_unmix(i, x1) for i in range(26)], dim=0).permute(1, 2, 0, 3)
    x2_2 = torch.stack([v_unmix(i, x2) for i in range(26)], dim=0).permute(1, 2, 0, 3)

    def alpha(m, x):
        h = F.relu(lin(sd, f"{m}.model.1", F.relu(x)))
        return torch.sigmoid(lin(sd, f"{m}.model.4", h).unsqueeze(-1))

    a1, a2 = alpha("alpha_a", x1), alpha("alpha_v", x2)
    bg1 = x1_2[:, :, -1:].repeat(1, 1, 25, 1)
    bg2 = x2_2[:, :, -1:].repeat(1, 1, 25, 1)
    t1 = F.relu(lin(sd, "reduce_a.0", torch.cat([a1 * x1_2[:, :, :-1], (1 - a1) * bg1], dim=-1)))
    t2 = F.relu(lin(sd, "reduce_v.0", torch.cat([a2 * x2_2[:, :, :-1], (1 - a2) * bg2], dim=-1)))

    def secm(p, x, y=None):
        b, t, k, d = x.shape
        xx = x.reshape(b * t, k, d)
        yy = xx if y is None else y.reshape(b * t, k, d)
        return torch_attention(sd, f"{p}.attn", xx, yy, heads)[0]  # (B*T, K, D)

    def lgsf(p, x, y=None):
        b, t, k, d = x.shape
        xk = x.permute(0, 2, 1, 3).reshape(b * k, t, d)
        if y is not None:
            yk = y.permute(0, 2, 1, 3).reshape(b * k, t, d)
            loc, glob = F.relu(lin(sd, f"{p}.glob", xk)), F.relu(lin(sd, f"{p}.glob", yk)).mean(-2, keepdim=True)
        else:
            loc, glob = F.relu(lin(sd, f"{p}.glob1", xk)), F.relu(lin(sd, f"{p}.glob2", xk)).mean(-2, keepdim=True)
        out = torch.sigmoid(F.cosine_similarity(loc, glob, dim=-1).unsqueeze(-1)) * glob
        return out.reshape(b, k, t, d).permute(0, 2, 1, 3).reshape(b * t, k, d)

    def fgse(p, q, other):
        b, t, k, d = q.shape
        q0 = q.reshape(b * t, k, d)
        s1 = (q0 + secm(f"{p}.SECM_1", q)).reshape(b, t, k, d)
        src1 = lin(sd, f"{p}.fc1", q0 + lgsf(f"{p}.LGSF_1", s1))
        s2 = (q0 + secm(f"{p}.SECM_2", q, other)).reshape(b, t, k, d)
        src2 = lin(sd, f"{p}.fc2", q0 + lgsf(f"{p}.LGSF_2", s2, other))
        z = ln(sd, f"{p}.norm1", src1 + src2)
        return lin(sd, f"{p}.linear2", F.relu(lin(sd, f"{p}.linear1", z))).reshape(b, t, k, d)  # no residual

    for i in range(layers):  # parallel: both from the pre-update tokens
        t1, t2 = fgse(f"av_enhance.layers.{i}", t1, t2), fgse(f"av_enhance.layers.{i}", t2, t1)
    x = torch.stack([t1, t2], dim=2)  # (B,T,2,K,D)

    def last_pred(head):
        return torch.stack([lin(sd, f"{head}.fc.{k}", x[:, :, :, k]) for k in range(25)], dim=-2).squeeze(-1)

    return mmil_pool(last_pred("fc_prob"), last_pred("fc_frame_att"), last_pred("fc_av_att"))


def cvcms_forward(sd, audio, visual, st, occ=128):
    a, v = project(sd, audio, visual, st)
    x1 = han_layer_fwd(sd, "hat_encoder.layers.0", a, v, 1)
    x2 = han_layer_fwd(sd, "hat_encoder.layers.0", v, a, 1)
    b = x1.shape[0]
    c1 = F.relu(lin(sd, "fc_occ_class_a", x1)).view(b * 10, 25, occ)
    c2 = F.relu(lin(sd, "fc_occ_class_v", x2)).view(b * 10, 25, occ)
    # av_class_encoder: Encoder with one HANLayer, both outputs from the pre-update tokens
    o1 = han_layer_fwd(sd, "av_class_encoder.layers.0", c1, c2, 1)
    o2 = han_layer_fwd(sd, "av_class_encoder.layers.0", c2, c1, 1)
    p1 = lin(sd, "fc_occ_prob_a", o1).view(b, 10, 1, -1)
    p2 = lin(sd, "fc_occ_prob_v", o2).view(b, 10, 1, -1)
    x = torch.stack([x1, x2], dim=2)
    return mmil_pool(torch.cat([p1, p2], dim=2), lin(sd, "fc_frame_att", x), lin(sd, "fc_av_att", x))
