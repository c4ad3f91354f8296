"""What is done with an adapter once trained: evaluate and chat, export to GenAptitude, merge."""
