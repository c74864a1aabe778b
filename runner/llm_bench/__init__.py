"""`runner bench --level llm`: token latencies, token rates, memory and accuracy of decoder LLMs."""
