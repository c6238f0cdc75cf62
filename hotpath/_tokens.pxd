# Interface of the compiled token estimator; see _tokens.pyx.

cpdef long estimate_text_tokens(bytes text, int family=*) except -1
