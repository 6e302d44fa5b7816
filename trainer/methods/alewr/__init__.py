"""ALEWR: adaptive layer- and element-wise regularisation against forgetting general ability.

`importance.compute_importance` measures, once per base, how much each weight of the target
modules contributed to lowering a general-role loss (a synaptic-intelligence path integral);
`penalty.build_penalty` turns that into the drift penalty that `full` and `s2ft` add to CE.
"""
