// Progressive enhancement only: every page reads and every form works without this file.
// 1. Forms with data-confirm ask first. 2. The jobs table refreshes itself every 2 s.
document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

const jobs = document.getElementById("jobs");
if (jobs) {
  const refresh = async () => {
    try {
      const answer = await fetch(jobs.dataset.refresh, { credentials: "same-origin" });
      if (answer.ok) jobs.innerHTML = await answer.text();
    } catch (_) { /* the server is restarting: try again next time */ }
  };
  setInterval(refresh, 2000);
}
