"""Runs the pinned SDK's LangGraph adapter around a real (pinned) LangGraph graph, with engram as
the memory. The graph's one node answers with what it was given: the last human message and the
system messages in front of it, so the caller sees whether memory was injected.
Env: ENGRAM_BASE_URL, ENGRAM_KEY, SESSION, MESSAGE. Prints the answer as JSON."""

import json
import os

from hippocortex.adapters import langgraph as hx_langgraph
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, MessagesState, StateGraph


def respond(state: MessagesState):
    msgs = state["messages"]
    human = next(m.content for m in reversed(msgs) if isinstance(m, HumanMessage))
    system = " | ".join(m.content for m in msgs if isinstance(m, SystemMessage))
    return {"messages": [AIMessage(content=f"echo: {human}"), AIMessage(content=f"echo: {human}\nsystem: {system}")]}


builder = StateGraph(MessagesState)
builder.add_node("respond", respond)
builder.add_edge(START, "respond")
builder.add_edge("respond", END)
graph = hx_langgraph.wrap(
    builder.compile(),
    api_key=os.environ["ENGRAM_KEY"],
    base_url=os.environ["ENGRAM_BASE_URL"],
    session_id=os.environ["SESSION"],
)
result = graph.invoke({"messages": [{"role": "user", "content": os.environ["MESSAGE"]}]})
print(json.dumps({"content": result["messages"][-1].content}))
